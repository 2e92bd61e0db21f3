"""Bench rows for fair sharing: a small tenant beside a greedy one, and three weighted tenants.

Measured as throughput (samples/s) like every other row, with the latencies the goals speak of in
the notes: a small job's p50 beside a greedy 16-deep stream against one of the greedy stream's
requests alone, the greedy stream's throughput beside the small job, and the shares of three
tenants with weights 1:1:2 each streaming as fast as it can. The greedy job is another process
sending gRPC bytes with no tenant declared (the hardest neighbour: the server parses and writes
its 9.6 MB messages), against a server at its shipped --max-batch.
"""

from __future__ import annotations

import itertools
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch

GREEDY, SMALL, SPEC = (64, 3, 224, 224), (4, 3, 64, 64), "rand-m9-n2"
SMALL_REQUESTS, STREAM_SECONDS, SHARE_SECONDS = 30, 10.0, 12.0
CASE = "fair sharing"
GREEDY_JOB = """
import itertools, sys, threading, time
import numpy as np
from augserve.client import Client
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
x = np.random.default_rng(0).integers(0, 256, {shape}, dtype=np.uint8)
answers, started = 0, None
with Client({target!r}, timeout=600, shared_memory=False) as client:
    for batch in client.map(itertools.repeat(x), pipeline={spec!r}, prefetch=16):
        answers += 1
        if answers == 4:  # the stream's window is full
            started = time.perf_counter()
            print("streaming", flush=True)
        if stop.is_set() and started is not None:
            break
print(len(x) * (answers - 4) / (time.perf_counter() - started), flush=True)
"""


class GreedyJob:
    """A 16-deep ``Client.map`` of GREEDY batches in its own process over gRPC bytes, no tenant declared;
    it streams until ``rate`` is asked for, which is its samples/s since its window filled."""

    def __init__(self, target: str):
        from augserve.runtime import dying_with_parent

        code = GREEDY_JOB.format(shape=GREEDY, target=target, spec=SPEC)
        self.process = subprocess.Popen([sys.executable, "-c", dying_with_parent(code)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "streaming":
            self.process.kill()
            raise RuntimeError(f"bench: the greedy job exited with {self.process.wait()} before streaming")

    def rate(self) -> float:
        try:
            out, _ = self.process.communicate(input="", timeout=300)
        finally:
            self.process.kill()
        return float(out.split()[-1])


def _latencies(client, x: np.ndarray, count: int) -> list[float]:
    seconds = []
    for key in range(count):
        started = time.perf_counter()
        client.augment(x, pipeline=SPEC, keys=np.arange(key * len(x), (key + 1) * len(x)))
        seconds.append(time.perf_counter() - started)
    return seconds


def fairness_rows(device: torch.device) -> list[tuple[str, str, float, float, str]]:
    from augserve.tools.bench.harness import server_process
    from augserve.client import Client

    folder = pathlib.Path(tempfile.mkdtemp(prefix="augserve-tenants-"))
    (folder / "serve.yaml").write_text("tenants:\n  named:\n    heavy: {weight: 2}\n")
    target, process = server_process(["--config", str(folder / "serve.yaml"), "--device", str(device)])
    rng = np.random.default_rng(0)
    big, small = rng.integers(0, 256, GREEDY, dtype=np.uint8), rng.integers(0, 256, SMALL, dtype=np.uint8)
    try:
        with Client(target, timeout=600, shared_memory=False) as greedy:
            _latencies(greedy, big, 2)  # warm up
            one_request = statistics.median(_latencies(greedy, big, 5))
        with Client(target, timeout=600, tenant="small") as little:
            _latencies(little, small, 3)
            small_alone = _latencies(little, small, SMALL_REQUESTS)
            job = GreedyJob(target)
            time.sleep(STREAM_SECONDS)
            alone = job.rate()
            job = GreedyJob(target)
            small_beside = _latencies(little, small, SMALL_REQUESTS)
            beside = job.rate()
        shares = _weighted_shares(target, big)
    finally:
        process.terminate()
        process.wait(timeout=30)
    case = (f"{CASE}: small tenant ({'x'.join(map(str, SMALL))}) beside a greedy job's 16-deep stream ({SPEC}), "
            "greedy job over gRPC bytes in its own process")
    p50, p95 = statistics.median(small_beside), float(np.percentile(small_beside, 95))
    rows = [(case, "greedy stream alone", alone, 1.0, f"one 64-image request alone: {one_request * 1e3:.0f} ms"),
            (case, "greedy stream beside the small tenant", beside, beside / alone, "goal >= 0.9x"),
            (case, "small tenant alone", len(small) / statistics.median(small_alone),
             len(small) / statistics.median(small_alone) / alone, f"p50 {statistics.median(small_alone) * 1e3:.0f} ms"),
            (case, "small tenant beside the greedy stream", len(small) / p50, len(small) / p50 / alone,
             f"p50 {p50 * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms = {p50 / one_request:.2f}x one greedy request "
             "(goal <= 2.5x)")]
    total = sum(shares.values())
    case = f"{CASE}: 3 tenants, weights 1:1:2, each a 16-deep stream of {'x'.join(map(str, GREEDY))}"
    for name, weight in (("light", 1), ("light2", 1), ("heavy", 2)):
        rate = shares[name] / SHARE_SECONDS
        rows.append((case, f"tenant {name} (weight {weight})", rate, shares[name] / total,
                     f"share {shares[name] / total:.3f} (weight's {weight / 4:.3f}; goal within 10%)"))
    return rows


def _weighted_shares(target: str, x: np.ndarray) -> dict[str, int]:
    """Samples each tenant got while all three streamed for ``SHARE_SECONDS``."""
    from augserve.client import Client

    counts = {name: 0 for name in ("light", "light2", "heavy")}
    stop = threading.Event()

    def stream(name: str) -> None:
        with Client(target, timeout=600, tenant=name) as client:
            for batch in client.map(itertools.repeat(x), pipeline=SPEC, prefetch=16):
                if stop.is_set():
                    break
                counts[name] += len(batch.x)

    threads = [threading.Thread(target=stream, args=(name,)) for name in counts]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # every stream's window is full
    start = dict(counts)
    time.sleep(SHARE_SECONDS)
    end = dict(counts)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    return {name: end[name] - start[name] for name in counts}
