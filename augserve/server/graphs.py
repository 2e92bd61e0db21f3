"""CUDA graphs of device-plan calls: captured on first use per (pipeline, batch shape, dtype), then replayed.

The device half of a device-plan call (``device_plan.Call.run``) launches the same kernels with the same
shapes whatever was drawn, and reads its inputs (the batch, the soft labels, one buffer of every draw)
from tensors. So it is captured once per kind of call with its inputs in fixed ("static") tensors, and a
later call of that kind copies its inputs there and replays the graph: one launch for the whole pipeline
instead of hundreds, with the same bits (the same kernels on the same values). What a replay returns is
overwritten by the next replay of that graph: the device worker copies it to the host first.

A call whose capture fails (an op CUDA cannot capture) is logged once and runs eagerly from then on. The
cache holds ``capacity`` graphs (each keeps its own memory pool), least recently used out first.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Callable

import torch

from augserve.device_plan import Call

log = logging.getLogger("augserve.server")
WARMUP_RUNS = 2  # eager runs on a side stream before capture, as PyTorch's notes ask (library handles, caches)
Key = tuple
Outputs = tuple[torch.Tensor, "torch.Tensor | None"]
# capture(run, device) -> (replay, outputs): ``run`` reads the static inputs; ``replay`` refreshes ``outputs``
Capture = Callable[[Callable[[], Outputs], torch.device], tuple[Callable[[], None], Outputs]]


def cuda_capture(run: Callable[[], Outputs], device: torch.device) -> tuple[Callable[[], None], Outputs]:
    """``run`` captured as a CUDA graph, after warm-up runs on a side stream (PyTorch's CUDA-graph notes)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(WARMUP_RUNS):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = run()
    return graph.replay, outputs


@dataclass
class _Captured:
    replay: Callable[[], None]
    x: torch.Tensor
    labels: torch.Tensor | None
    buffer: torch.Tensor
    out: Outputs


class CudaGraphs:
    """Replays captured device-plan calls on one CUDA device; ``run`` falls back to eager runs where it must.
    ``capture`` is ``cuda_capture`` (tests give another)."""

    def __init__(self, device: torch.device, metrics, capacity: int = 8, capture: Capture = cuda_capture):
        self.device = device
        self.metrics = metrics
        self.capacity = capacity
        self._capture_run = capture
        self._graphs: collections.OrderedDict[Key, _Captured] = collections.OrderedDict()
        self._eager: set[Key] = set()  # kinds whose capture failed

    def run(self, pipeline, call: Call) -> Outputs:
        """The call's batch (on the device) and its host labels augmented, by a graph where one is or can be
        captured."""
        x, labels = call.x, call.labels
        key = (pipeline, tuple(x.shape), x.dtype, None if labels is None else tuple(labels.shape), call.out_dtype,
               call.packed.signature)
        captured = self._graphs.get(key)
        if captured is None and key not in self._eager:
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
            replay, out = self._capture_run(lambda: call.run(static_x, static_labels, buffer), self.device)
        except RuntimeError as error:
            log.warning("CUDA graph: capturing %s for %s batches failed, running those eagerly from now on: %s",
                        key[0], "x".join(map(str, key[1])), error)
            self._eager.add(key)
            return None
        if len(self._graphs) >= self.capacity:
            self._graphs.popitem(last=False)
        captured = self._graphs[key] = _Captured(replay, static_x, static_labels, buffer, out)
        self.metrics.cuda_graphs.labels("captured").inc()
        self.metrics.cuda_graphs_cached.set(len(self._graphs))
        return captured  # a capture records the kernels without running them: ``run`` replays
