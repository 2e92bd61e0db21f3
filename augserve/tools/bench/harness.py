"""What every bench case shares: engines, interleaved timing, and a server in its own process."""

from __future__ import annotations

import atexit
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from tqdm import tqdm

ANCHOR = "torchvision.v2 per-sample"
KORNIA_KERNEL = "kornia, same per-sample params"


@dataclass
class Engine:
    name: str
    run: Callable[[], object]
    note: str = ""
    samples: int | None = None  # per call, when not the image batch size


Wanted = Callable[[str], bool]  # which case names to build


def time_interleaved(engines: list[Engine], rounds: int, sync: Callable[[], None],
                     progress: tqdm, block: int = 2) -> list[float]:
    """Median seconds per call of each engine.

    Engines take turns (round-robin), so drift in the machine's speed hits all alike. In its turn
    an engine runs one untimed call, then ``block`` timed calls: the time measured is a steady
    state, as in a training loop that augments batch after batch. (Timing single calls between
    other engines' work charges each call the cost of waking the CPU's threads and caches, which
    weighs most on the fastest engine: 0.5 ms on a 1.2 ms time warp here.)
    """
    times: list[list[float]] = [[] for _ in engines]
    for _ in range(rounds):
        for engine, samples in zip(engines, times):
            engine.run()
            sync()
            for _ in range(block):
                start = time.perf_counter()
                engine.run()
                sync()
                samples.append(time.perf_counter() - start)
        progress.update()
    return [statistics.median(samples) for samples in times]


def server_process(flags: list[str]) -> tuple[str, subprocess.Popen]:
    """``augserve serve`` in its own process (as deployed: no shared GIL with the client): address, process."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from augserve.runtime import augserve_command

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(augserve_command("serve", "--port", str(port), "--metrics-port", "0", *flags),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(lambda: (process.terminate(), process.wait(timeout=30)))
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                return f"127.0.0.1:{port}", process
        except grpc.RpcError:
            time.sleep(0.2)
    raise RuntimeError("bench: the augserve server did not become healthy within 120 s")
