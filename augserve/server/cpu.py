"""How many threads the device worker's torch ops use on the CPU.

torch sizes its intra-op pool from the host's cores, not from the CPUs the process may really
use (its affinity, a container's ``cpu.max`` quota), nor from what other processes leave free.
Its threads meet at a barrier after every parallel region, so one thread descheduled by a busy
neighbour stalls the rest (bench/RESULTS.md, "CPU contention": up to 17x slower per batch).
``ThreadBudget`` measures what other processes use while the worker's batches run and, every half
second, runs with as many threads as there are CPUs they leave free (at least one, at most the
usable ones).
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

CGROUP_ROOT = "/sys/fs/cgroup"
INTERVAL = 0.5  # seconds between decisions
SHORT_BATCH, SHORT_SAMPLED = 0.005, 8  # batches under 5 ms: one in 8 measured
MIN_OBSERVED = 0.25  # seconds of batches per CPU observed before a decision (the kernel counts 10 ms ticks)


def cgroup_cpu_limit(root: str = CGROUP_ROOT, membership: str = "/proc/self/cgroup") -> float | None:
    """CPUs this process's cgroup may use per second (cgroup v2 ``cpu.max`` or v1 CFS quota); None: no limit."""
    paths = {"": "/"}
    try:
        for line in pathlib.Path(membership).read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    except (OSError, ValueError):
        pass
    base = pathlib.Path(root)
    candidates = [(base / paths[""].lstrip("/") / "cpu.max", None), (base / "cpu.max", None),
                  (base / "cpu" / paths.get("cpu", "/").lstrip("/") / "cpu.cfs_quota_us", "v1"),
                  (base / "cpu" / "cpu.cfs_quota_us", "v1")]
    for path, version in candidates:
        try:
            if version is None:
                quota, period = path.read_text().split()[:2]
            else:
                quota, period = path.read_text().strip(), (path.parent / "cpu.cfs_period_us").read_text().strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period)
    return None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity, capped by its cgroup's quota (rounded up)."""
    count = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit()
    return max(1, min(count, math.ceil(limit)) if limit else count)


@dataclass
class CpuSample:
    """Cumulative CPU seconds: all the host's CPUs busy (steal included), this process, and the host's capacity."""

    host_busy: float
    host_total: float
    own: float


def read_cpu_sample(stat: str = "/proc/stat") -> CpuSample:
    with open(stat) as file:
        fields = [int(v) for v in file.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal; guest is inside user
    times = os.times()
    return CpuSample(busy / ticks, sum(fields[:8]) / ticks, times.user + times.system)


class ThreadBudget:
    """Intra-op threads for the device worker: a fixed count, or (0) as many as other processes leave free.

    Only the load that overlaps the worker's own batches counts: a client on the same host that
    works while the server waits for it (serializing, loading the next batch) takes nothing from
    the server's threads. Wrap each batch in ``with budget.batch():`` on the device thread (torch's
    thread count belongs to the calling thread).
    """

    def __init__(self, fixed: int = 0, *, usable: int | None = None, host_cpus: int | None = None,
                 sample: Callable[[], CpuSample] = read_cpu_sample, clock: Callable[[], float] = time.monotonic,
                 interval: float = INTERVAL):
        if fixed < 0:
            raise ValueError(f"--threads: expected 0 (adapt to the host's load) or a positive count, got {fixed}")
        self.fixed = fixed
        self.usable = usable or usable_cpus()
        self.host_cpus = host_cpus or os.cpu_count() or 1
        self._sample, self._clock, self.interval = sample, clock, interval
        self._others = 0.0  # CPU seconds other processes used during batches since the last decision
        self._capacity = 0.0  # the host's CPU seconds during those batches
        self._decided = clock()
        self._batches, self._last_seconds = 0, 0.0
        self.current = fixed or self.usable

    def threads(self) -> int:
        """The count to run the next batch with (re-decided at most once per interval, from enough data)."""
        if self.fixed:
            return self.fixed
        now = self._clock()
        if now - self._decided >= self.interval and self._capacity >= MIN_OBSERVED * self.host_cpus:
            others = max(0.0, self._others) / self._capacity * self.host_cpus  # CPUs busy beside our batches
            self.current = max(1, min(self.usable, math.floor(self.host_cpus - others + 0.5)))
            self._others = self._capacity = 0.0
            self._decided = now
        return self.current

    @contextlib.contextmanager
    def batch(self) -> Iterator[int]:
        """Run one batch with the current count (yielded); what others used meanwhile informs the next.

        Reading the host's counters costs ~0.1 ms with its disturbance, so batches shorter than
        ``SHORT_BATCH`` are measured one in ``SHORT_SAMPLED``.
        """
        count = self.threads()
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
        self._batches += 1
        if self.fixed or (self._last_seconds < SHORT_BATCH and self._batches % SHORT_SAMPLED):
            started = self._clock()
            yield count
            self._last_seconds = self._clock() - started
            return
        start, started = self._sample(), self._clock()
        try:
            yield count
        finally:
            end = self._sample()
            self._last_seconds = self._clock() - started
            self._others += (end.host_busy - start.host_busy) - (end.own - start.own)  # noisy, unbiased
            self._capacity += end.host_total - start.host_total
