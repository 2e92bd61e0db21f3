"""Many tensors in one byte buffer: what a step drew, copied to a device in one copy and read there as views.

``pack`` walks dicts, lists, tuples, dataclasses and sample streams, lays every tensor it finds at an
aligned offset of one host buffer, and ``Packed.read`` gives the same structure back with each tensor a
view of a copy of that buffer (on any device). Two packs with the same ``signature`` read a buffer the same
way, so a buffer copied into a fixed place can stand in for the next call's (CUDA graphs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from augserve.random import SampleRng

_ALIGN = 16  # bytes: every packed tensor starts where any dtype's view of it may start


@dataclass
class Packed:
    """Drawn params with their tensors packed into one host byte buffer, and how to read them anywhere."""

    host: torch.Tensor  # uint8
    params: Any  # as drawn, on the host
    _layout: list[tuple[int, torch.dtype, tuple[int, ...]]]  # offset, dtype, shape of each tensor

    @property
    def signature(self) -> tuple:
        """What fixes the layout: two calls with the same signature read their buffers the same way."""
        return tuple((dtype, shape) for _, dtype, shape in self._layout)

    def read(self, buffer: torch.Tensor) -> Any:
        """The params with every tensor a view of ``buffer`` (a copy of ``host`` on any device)."""
        views = iter([buffer[offset:offset + _nbytes(dtype, shape)].view(dtype).view(shape)
                      for offset, dtype, shape in self._layout])
        return _map_tensors(self.params, lambda _: next(views))


def _nbytes(dtype: torch.dtype, shape: tuple[int, ...]) -> int:
    return dtype.itemsize * (int(torch.Size(shape).numel()))


def pack(params: Any, pin: bool = False) -> Packed:
    """Every tensor in ``params`` (inside dicts, lists, tuples, dataclasses and sample streams) in one byte
    buffer; ``pin``: in page-locked memory, for an asynchronous copy to a GPU."""
    tensors: list[torch.Tensor] = []
    _map_tensors(params, lambda t: tensors.append(t) or t)
    layout, offset = [], 0
    for tensor in tensors:
        layout.append((offset, tensor.dtype, tuple(tensor.shape)))
        offset += -(-tensor.numel() * tensor.element_size() // _ALIGN) * _ALIGN
    host = torch.empty(offset, dtype=torch.uint8, pin_memory=pin)
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
    if isinstance(value, (list, tuple)):
        items = [_map_tensors(item, change) for item in value]
        return value if all(new is old for new, old in zip(items, value)) else type(value)(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
        mapped = {name: _map_tensors(item, change) for name, item in fields.items()}
        changed = any(mapped[name] is not fields[name] for name in fields)
        return dataclasses.replace(value, **mapped) if changed else value  # e.g. a policy's op space: as it is
    return value
