"""How many threads the device worker's torch ops use on the CPU.

torch sizes its intra-op pool from the host's cores, not from the CPUs the process may really
use (its affinity, a container's ``cpu.max`` quota), nor from what other processes leave free.
Its threads meet at a barrier after every parallel region, so one thread descheduled by a busy
neighbour stalls the rest: on the 2-core bench machine with two CPU-bound neighbours,
imagenet-randaug on 64x3x256x256 took 3.6 s per batch with 2 threads and 0.21 s with 1.
``ThreadBudget`` re-reads the host's load every half second and runs with as many threads as
there are CPUs the others leave free (at least one, at most the usable ones).
"""

from __future__ import annotations

import math
import os
import pathlib
import time
from dataclasses import dataclass
from typing import Callable

import torch

CGROUP_ROOT = "/sys/fs/cgroup"
INTERVAL = 0.5  # seconds between looks at the host's load


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

    ``apply()`` runs on the device thread before each batch; torch's thread count is per calling thread.
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
        self._last: CpuSample | None = None
        self._last_time = -math.inf
        self.current = fixed or self.usable

    def threads(self) -> int:
        """The count to run the next batch with (re-decided at most once per interval)."""
        if self.fixed:
            return self.fixed
        now = self._clock()
        if now - self._last_time < self.interval:
            return self.current
        sample = self._sample()
        if self._last is not None and sample.host_total > self._last.host_total:
            share = (sample.host_busy - self._last.host_busy - (sample.own - self._last.own)) / \
                    (sample.host_total - self._last.host_total)
            others = max(0.0, share) * self.host_cpus  # CPUs other processes kept busy
            free = self.host_cpus - others
            self.current = max(1, min(self.usable, math.floor(free + 0.25)))
        self._last, self._last_time = sample, now
        return self.current

    def apply(self) -> int:
        count = self.threads()
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
        return count
