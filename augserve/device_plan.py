"""The device plan: every step draws on the host, the draws cross to the device in one copy, and the steps
apply branch-free there.

Draws are a pure function of (seed, key, slot) and the batch's shape, never its values, so they need
nothing from the device: made on the host they cost the device no kernel and no sync, and they are the
CPU's own numbers bit for bit. Every drawn tensor of every step is packed into one byte buffer, copied
once, and read there through views; the apply half then launches the same kernels with the same shapes
for any seed and keys (``ops.plan``), which is what lets a CUDA graph (``server.graphs``) replay it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from augserve.modality import Modality
from augserve.ops import plan
from augserve.ops.casting import to_out_dtype
from augserve.random import SampleRng
from augserve.steps.base import Batch, Params, Step

_ALIGN = 16  # bytes: every packed tensor starts where any dtype's view of it may start
HOST = torch.device("cpu")


@dataclass
class Packed:
    """Drawn params with their tensors packed into one host byte buffer, and how to read them anywhere."""

    host: torch.Tensor  # uint8
    params: list[Params]  # as drawn, on the host
    _layout: list[tuple[int, torch.dtype, tuple[int, ...]]]  # offset, dtype, shape of each tensor

    @property
    def signature(self) -> tuple:
        """What fixes the layout: two calls with the same signature read their buffers the same way."""
        return tuple((dtype, shape) for _, dtype, shape in self._layout)

    def read(self, buffer: torch.Tensor) -> list[Params]:
        """The params with every tensor a view of ``buffer`` (a copy of ``host`` on any device)."""
        views = iter([buffer[offset:offset + _nbytes(dtype, shape)].view(dtype).view(shape)
                      for offset, dtype, shape in self._layout])
        return _map_tensors(self.params, lambda _: next(views))


def _nbytes(dtype: torch.dtype, shape: tuple[int, ...]) -> int:
    return dtype.itemsize * (int(torch.Size(shape).numel()))


def pack(params: list[Params]) -> Packed:
    """Every tensor in ``params`` (inside dicts, lists, dataclasses and sample streams) in one byte buffer."""
    tensors: list[torch.Tensor] = []
    _map_tensors(params, lambda t: tensors.append(t) or t)
    layout, offset = [], 0
    for tensor in tensors:
        layout.append((offset, tensor.dtype, tuple(tensor.shape)))
        offset += -(-tensor.numel() * tensor.element_size() // _ALIGN) * _ALIGN
    host = torch.empty(offset, dtype=torch.uint8, pin_memory=torch.cuda.is_available())
    for tensor, (start, dtype, shape) in zip(tensors, layout):
        host[start:start + _nbytes(dtype, shape)].view(dtype).view(shape).copy_(tensor)
    return Packed(host, params, layout)


def _map_tensors(value: Any, change: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``value`` with each tensor in it replaced by ``change(tensor)``, in a fixed order."""
    if isinstance(value, torch.Tensor):
        return change(value)
    if isinstance(value, SampleRng):
        return value.with_state(change(value.state))
    if isinstance(value, dict):
        return {key: _map_tensors(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_tensors(item, change) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _map_tensors(getattr(value, f.name), change)
                                             for f in dataclasses.fields(value) if f.init})
    return value


def draw(steps: list[Step], stages: list[str | None], start: int, shape: tuple[int, ...], dtype: torch.dtype,
         rng: SampleRng, modality: str) -> list[Params]:
    """What steps ``start``.. draw for a batch of ``shape`` and ``dtype``, on the host (branch-free: a step may
    work out there what its branch-free apply needs)."""
    drawn = []
    with plan.branch_free():
        for slot in range(start, len(steps)):
            step = steps[slot]
            batch = Batch(shape, dtype, Modality(stages[slot] or modality), HOST)
            step.check_shape(shape, dtype)
            drawn.append(step.draw(rng.fork(slot), batch))
            shape, dtype = step.output_shape(shape), step.output_dtype(dtype)
    return drawn


def apply(steps: list[Step], x: torch.Tensor, labels: torch.Tensor | None,
          params: list[Params]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The steps applied branch-free with their params (already on ``x``'s device)."""
    with plan.branch_free():
        for step, drawn in zip(steps, params):
            x = step.apply(x, drawn)
            labels = None if labels is None else step.relabel(labels, drawn)
    return x, labels


@dataclass
class Call:
    """A device-plan call with the host's half done: the steps left, the checked soft labels and every draw
    packed, on the host; ``run`` is the device's half (no host read, the same kernels for any draws)."""

    steps: list[Step]
    x: torch.Tensor  # the dense batch the steps start from, where it is
    labels: torch.Tensor | None  # (B, K) float32 soft labels, checked, on the host
    packed: Packed
    params: list[Params]  # what the call reports, per step (on the host)
    out_dtype: torch.dtype | None

    def run(self, x: torch.Tensor, labels: torch.Tensor | None,
            buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch and labels augmented on their device; ``buffer`` is ``packed.host`` copied there."""
        x, labels = apply(self.steps, x, labels, self.packed.read(buffer))
        return to_out_dtype(x, self.out_dtype), labels
