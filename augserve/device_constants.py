"""Tensors a kernel reads but never writes (fills, lookup tables, filter banks), made once per device and key.

A constant built with ``torch.tensor(values, device=...)`` inside a kernel is a host-to-device copy on
every call, and a copy from pageable host memory cannot be captured in a CUDA graph. Made here it is
copied the first time (a warm-up call) and read from the device after. A captured graph holds raw
addresses, not references: ``kept()`` lists what a run was handed, so the graph keeps those alive
whatever the store evicts later. Callers must not write into what they get.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from typing import Callable, Hashable, Iterator

import torch

CAPACITY = 512  # entries; a graph keeps its own alive beyond this
_store: collections.OrderedDict[tuple, torch.Tensor] = collections.OrderedDict()
_lock = threading.Lock()
_recording = threading.local()


def cached(device: torch.device, key: Hashable, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The tensor stored for (``device``, ``key``), made by ``make()`` (on ``device``) the first time."""
    full_key = (torch.device(device), key)
    with _lock:
        tensor = _store.get(full_key)
        if tensor is not None:
            _store.move_to_end(full_key)
    if tensor is None:
        tensor = make()
        with _lock:
            _store[full_key] = tensor
            while len(_store) > CAPACITY:
                _store.popitem(last=False)
    for kept_list in getattr(_recording, "lists", ()):
        kept_list.append(tensor)
    return tensor


def on(device: torch.device, values: tuple, dtype: torch.dtype) -> torch.Tensor:
    """``torch.tensor(values, dtype=dtype, device=device)``, made once (``values``: nested tuples of numbers)."""
    return cached(device, ("values", values, dtype), lambda: torch.tensor(values, dtype=dtype, device=device))


@contextlib.contextmanager
def kept() -> Iterator[list[torch.Tensor]]:
    """Every constant handed out in this thread inside the block, for a holder that must keep them alive."""
    handed: list[torch.Tensor] = []
    _recording.lists = [*getattr(_recording, "lists", ()), handed]
    try:
        yield handed
    finally:
        _recording.lists = [kept_list for kept_list in _recording.lists if kept_list is not handed]


def forget() -> None:
    """Drop every stored constant (a stand-in device's tensors must not outlive it)."""
    with _lock:
        _store.clear()
