"""Bench rows across network hosts (root only): a served epoch over gRPC bytes from another host against
the same epoch on the replica's own host, and how long each silent fault costs a stream.

Two replicas and a trainer on hosts of their own (``augserve.tools.hosts``), a folder of 1,024 JPEGs
served as 160x160 crops in batches of 16. The fault rows each run one epoch whose replica is cut off,
frozen or killed after 8 batches; their rate is that epoch's samples/s, the notes say when the client
failed over (from its log) and the longest it waited for a batch.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import time

from augserve.tools.cluster import FAULTS, NAME, REPLICAS, Cluster, Trainer, write_jpegs
from augserve.tools.hosts import Hosts

CASE = "many hosts"
EPOCH = ["dataset", "--dataset", "jpegs", "--batch-size", "16", "--pipeline",
         json.dumps([{"op": "random_resized_crop", "size": 160}, {"op": "rand_augment", "n": 2, "m": 9}])]
SAMPLES, FAULT_AFTER, PACE, EPOCH_S = 1024, 8, "0.05", 300
FAULT_NAMES = {"partition": "partition (packets dropped both ways)", "freeze": "freeze (SIGSTOP)", "kill": "kill (SIGKILL)"}


def can_run() -> bool:
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("ip", "iptables"))


def _epoch(trainer: Trainer) -> tuple[float, float]:
    """(samples/s, the longest wait between batches) of a trainer's finished epoch, each sample checked once."""
    last = trainer.finish(EPOCH_S)
    if "done" not in last:
        raise RuntimeError(f"bench epoch failed: {last}")
    samples = sorted(i for batch in trainer.batches for i in batch["indices"])
    if samples != list(range(SAMPLES)):
        raise RuntimeError(f"bench epoch delivered {len(samples)} samples, {len(set(samples))} distinct, not each once")
    times = [batch["at"] for batch in trainer.batches]
    return SAMPLES / (times[-1] - trainer.started), max(b - a for a, b in zip(times, times[1:]))


def hosts_rows() -> list[tuple[str, str, float, float, str]]:
    work = pathlib.Path(tempfile.mkdtemp(prefix="augserve-hosts-"))
    try:
        jpegs = write_jpegs(work / "jpegs")
        config = work / "serve.yaml"
        config.write_text(f"datasets:\n  jpegs: {{type: folder, path: {jpegs}}}\n")
        with Hosts([*REPLICAS, "trainer"], names={NAME: list(REPLICAS)}) as hosts:
            cluster = Cluster(hosts, config, work)
            for host in REPLICAS:
                cluster.start(host)
            for host in REPLICAS:
                cluster.wait_ready(host)
            return _rows(cluster)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _timed(cluster: Cluster, host: str, *args: str, **options) -> Trainer:
    trainer = Trainer(cluster, host, *args, **options)
    trainer.started = time.time()
    return trainer


def _rows(cluster: Cluster) -> list[tuple[str, str, float, float, str]]:
    case = f"{CASE}: a served epoch of {SAMPLES} JPEGs, 160x160 crops in batches of 16, over gRPC bytes"
    _epoch(_timed(cluster, "trainer", *EPOCH))  # warm up: the replicas index and read the folder once
    local, _ = _epoch(_timed(cluster, "replica-a", *EPOCH, "--bytes", target="127.0.0.1:50051"))
    across, across_wait = _epoch(_timed(cluster, "trainer", *EPOCH, target="replica-a:50051"))
    rows = [(case, "trainer on the replica's host (loopback)", local, 1.0, ""),
            (case, "trainer on another host", across, across / local, f"longest wait for a batch {across_wait:.2f} s")]
    case = (f"{CASE}: the replica carrying that epoch (through both replicas' name, the trainer taking {PACE} s per "
            f"batch) fails silently after {FAULT_AFTER} batches")
    steady, steady_wait = _epoch(_timed(cluster, "trainer", *EPOCH, "--pace", PACE))
    rows.append((case, "no fault", steady, 1.0, f"longest wait for a batch {steady_wait:.2f} s"))
    for kind in FAULTS:
        trainer = _timed(cluster, "trainer", *EPOCH, "--pace", PACE)
        at = cluster.faulted(trainer, kind, "StreamDataset", FAULT_AFTER, EPOCH_S)
        rate, wait = _epoch(trainer)
        failover = next((t - at for t in trainer.failovers() if t >= at - 1), float("nan"))
        rows.append((case, FAULT_NAMES[kind], rate, rate / steady, f"failed over {failover:.1f} s after the fault "
                     f"(goal: within 10 s); longest wait for a batch {wait:.1f} s; every sample once"))
    return rows
