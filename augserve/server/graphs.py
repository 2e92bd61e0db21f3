"""CUDA graphs of device-plan calls: captured on first use per (pipeline, batch shape, dtype), then replayed.

The device half of a device-plan call (``device_plan.Call.run``) launches the same kernels with the same
shapes whatever was drawn, and reads its inputs (the batch, the soft labels, one buffer of every draw)
from tensors. So it is captured once per kind of call with its inputs in fixed ("static") tensors, and a
later call of that kind copies its inputs there and replays the graph: one launch for the whole pipeline
instead of hundreds, with the same bits (the same kernels on the same values). What a replay returns is
overwritten by the next replay of that graph: the device worker copies it to the host first.

A call whose capture fails (an op CUDA cannot capture) is logged and, after a second failure, runs eagerly
from then on. The cache holds ``capacity`` graphs, least recently used out first; each keeps alive the
constants it reads (``device_constants.kept``).
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Callable

import torch

from augserve import device_constants
from augserve.device_plan import Call

log = logging.getLogger("augserve.server")
WARMUP_RUNS = 2  # eager runs on a side stream before capture, as PyTorch's notes ask (library handles, caches)
CAPTURE_TRIES = 2  # a kind of call whose capture failed this often runs eagerly from then on
FAILURES_KEPT = 256  # kinds of call whose failed captures are remembered
Key = tuple
Outputs = tuple[torch.Tensor, "torch.Tensor | None"]
# capture(run, device) -> (replay, outputs): ``run`` reads the static inputs; ``replay`` refreshes ``outputs``
Capture = Callable[[Callable[[], Outputs], torch.device], tuple[Callable[[], None], Outputs]]


class CudaCapture:
    """``run`` captured as a CUDA graph, after warm-up runs on a side stream (PyTorch's CUDA-graph notes).

    Every graph draws on one memory pool: safe because replays run one at a time on one stream and each
    replay's outputs are copied out before the next replay (what one replay leaves in the pool, another
    may overwrite). The capture is thread-local: another thread's CUDA work (decoding ahead) does not
    break it, and the device worker keeps that thread out while it captures all the same.
    """

    def __init__(self):
        self.pool = None

    def __call__(self, run: Callable[[], Outputs], device: torch.device) -> tuple[Callable[[], None], Outputs]:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                run()
        torch.cuda.current_stream(device).wait_stream(side)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            outputs = run()
        return graph.replay, outputs


@dataclass
class _Captured:
    replay: Callable[[], None]
    x: torch.Tensor
    labels: torch.Tensor | None
    buffer: torch.Tensor
    out: Outputs
    constants: list[torch.Tensor]  # what the graph reads by address: alive as long as it is


class CudaGraphs:
    """Replays captured device-plan calls on one CUDA device; ``run`` falls back to eager runs where it must.
    ``capture`` is a ``CudaCapture`` (tests give another); ``exclusive`` is held while capturing (other threads
    that use the device take it too)."""

    def __init__(self, device: torch.device, metrics, capacity: int = 8, capture: Capture | None = None,
                 exclusive: threading.Lock | None = None):
        self.device = device
        self.metrics = metrics
        self.capacity = capacity
        self._capture_run = capture or CudaCapture()
        self._exclusive = exclusive or threading.Lock()
        self._graphs: collections.OrderedDict[Key, _Captured] = collections.OrderedDict()
        self._failed: collections.OrderedDict[Key, int] = collections.OrderedDict()  # kind -> failed captures

    def run(self, pipeline, call: Call) -> Outputs:
        """The call's batch (on the device) and its host labels augmented, by a graph where one is or can be
        captured."""
        x, labels = call.x, call.labels
        key = (pipeline, tuple(x.shape), x.dtype, None if labels is None else tuple(labels.shape), call.out_dtype,
               call.packed.signature)
        captured = self._graphs.get(key)
        if captured is None and self._failed.get(key, 0) < CAPTURE_TRIES:
            captured = self._capture(key, call)
        if captured is None:
            self.metrics.cuda_graphs.labels("eager").inc()
            on_device = None if labels is None else labels.to(self.device, non_blocking=True)
            return call.run(x, on_device, call.packed.host.to(self.device, non_blocking=True))
        self._graphs.move_to_end(key)
        captured.x.copy_(x, non_blocking=True)
        if labels is not None:
            captured.labels.copy_(labels, non_blocking=True)
        captured.buffer.copy_(call.packed.host, non_blocking=True)
        captured.replay()
        self.metrics.cuda_graphs.labels("replayed").inc()
        return captured.out

    def _capture(self, key: Key, call: Call) -> _Captured | None:
        static_x = call.x.clone()
        static_labels = None if call.labels is None else call.labels.to(self.device)
        buffer = call.packed.host.to(self.device)
        try:
            with self._exclusive, device_constants.kept() as constants:
                replay, out = self._capture_run(lambda: call.run(static_x, static_labels, buffer), self.device)
        except RuntimeError as error:
            tries = self._failed.pop(key, 0) + 1
            self._failed[key] = tries
            if len(self._failed) > FAILURES_KEPT:
                self._failed.popitem(last=False)
            log.warning("CUDA graph: capturing %s for %s batches failed (try %d of %d)%s: %s", key[0],
                        "x".join(map(str, key[1])), tries, CAPTURE_TRIES,
                        ", running those eagerly from now on" if tries >= CAPTURE_TRIES else "", error)
            return None
        if len(self._graphs) >= self.capacity:
            self._graphs.popitem(last=False)
        captured = self._graphs[key] = _Captured(replay, static_x, static_labels, buffer, out, constants)
        self.metrics.cuda_graphs.labels("captured").inc()
        self.metrics.cuda_graphs_cached.set(len(self._graphs))
        return captured  # a capture records the kernels without running them: ``run`` replays
