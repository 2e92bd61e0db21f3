"""Bench rows for many jobs on one server: the same epoch (shared batches) and other seeds (shared decode).

Each job is a process of its own streaming one served epoch of a JPEG folder over gRPC bytes, as a
training job on another host does; the jobs start together and the row is their aggregate samples/s,
with the server's resident memory after the run (and its peak). Every configuration streams an epoch
no earlier run asked for, so nothing comes from a window filled before the timing.
"""

from __future__ import annotations

import itertools
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from augserve.tools.bench.harness import server_process

CASE = "many jobs"
BATCH, SIZE = 32, 160
SPEC = [{"op": "random_resized_crop", "size": SIZE}, {"op": "hflip"}, {"op": "rand_augment", "n": 2, "m": 9}]
WINDOW = 512 << 20  # --decoded-window-bytes: the folder's decoded pixels (~0.5 MB an image) fit
JOB = """
import sys, time
from augserve.client import Client
target, seed, epoch, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
with Client(target, timeout=600, shared_memory=False) as client:
    client.server_info()
    time.sleep(max(0.0, start - time.time()))
    began, samples = time.time(), 0
    for batch in client.stream_dataset("jpegs", {spec!r}, {batch}, seed=seed, epoch=epoch):
        samples += len(batch.x)
print(began, time.time(), samples, flush=True)
"""


def _memory(pid: int) -> tuple[int, int]:
    """The process's resident and peak resident bytes."""
    fields = dict(line.split(":", 1) for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) << 10, int(fields["VmHWM"].split()[0]) << 10


def _jobs(target: str, seeds: list[int], epoch: int) -> float:
    """Aggregate samples/s of one job per seed, all on ``epoch``, started together."""
    from augserve.runtime import dying_with_parent

    code = dying_with_parent(JOB.format(spec=SPEC, batch=BATCH))
    start = time.time() + 3.0  # every process has imported its client and connected by then
    processes = [subprocess.Popen([sys.executable, "-c", code, target, str(seed), str(epoch), str(start)],
                                  stdout=subprocess.PIPE, text=True) for seed in seeds]
    outputs = [process.communicate(timeout=1800)[0].split() for process in processes]
    if any(process.returncode for process in processes) or any(len(out) != 3 for out in outputs):
        raise RuntimeError(f"bench: a job failed: {[process.returncode for process in processes]}")
    began, ended = min(float(out[0]) for out in outputs), max(float(out[1]) for out in outputs)
    return sum(int(out[2]) for out in outputs) / (ended - began)


def many_jobs_rows(files: int = 512) -> list[tuple[str, str, float, float, str]]:
    """The rows, over a folder of ``files`` JPEGs of ImageNet-like sizes."""
    from augserve.photos import write_imagenet_like_jpegs

    work = pathlib.Path(tempfile.mkdtemp(prefix="augserve-jobs-"))
    try:
        write_imagenet_like_jpegs(work / "jpegs", count=files, seed=4)
        config = work / "serve.yaml"
        config.write_text(f"datasets:\n  jpegs: {{type: folder, path: {work / 'jpegs'}}}\n")
        flags = ["--config", str(config), "--max-batch", "64", "--device", "cpu", "--decoded-window-bytes"]
        # shared epochs alone (a decoded window would also spare a lone job's later epochs their decodes, which is
        # not what these rows compare), shared decode alone, and nothing shared
        epochs_only, epochs_process = server_process([*flags, "0"])
        decode, decode_process = server_process([*flags, str(WINDOW), "--shared-epoch-bytes", "0"])
        alone, alone_process = server_process([*flags, "0", "--shared-epoch-bytes", "0"])
        servers = (epochs_process, decode_process, alone_process)
        epochs = itertools.count(1)
        for target in (epochs_only, decode, alone):  # warm up: each server reads the folder and builds its pipeline
            _jobs(target, [0], next(epochs))

        def row(case, name, target, process, seeds, anchor=None):
            rate = _jobs(target, seeds, next(epochs))
            resident, peak = _memory(process.pid)
            note = f"server RSS {resident / 2**20:,.0f} MiB after (peak {peak / 2**20:,.0f} MiB)"
            return case, name, rate, rate / (anchor or rate), note

        same = (f"{CASE}: jobs on the same epoch of {files} JPEGs, {SIZE}x{SIZE} crops + RandAugment in batches of "
                f"{BATCH}, each job a process over gRPC bytes")
        one = row(same, "1 job (--decoded-window-bytes 0)", epochs_only, epochs_process, [7])
        rows = [one]
        rows.append(row(same, "2 jobs, aggregate", epochs_only, epochs_process, [7, 7], one[2]))
        rows.append(row(same, "4 jobs, aggregate", epochs_only, epochs_process, [7] * 4, one[2]))
        rows.append(row(same, "4 jobs, aggregate, nothing shared (--shared-epoch-bytes 0)", alone, alone_process,
                        [7] * 4, one[2]))
        seeds = f"{CASE}: 4 jobs with 4 seeds over the same {files} JPEGs (other crops, other orders: no batch in common)"
        independent = row(seeds, "4 independent streams (--decoded-window-bytes 0)", alone, alone_process,
                          [11, 12, 13, 14])
        rows += [independent, row(seeds, f"shared decode (--decoded-window-bytes {WINDOW >> 20} MiB)", decode,
                                  decode_process, [11, 12, 13, 14], independent[2])]
        for process in servers:
            process.terminate()
            process.wait(timeout=60)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
