"""Small constant tensors (fills, means, lookup tables) made once per device and value.

A constant built with ``torch.tensor(values, device=...)`` inside a kernel is a host-to-device copy on
every call, and a copy from pageable host memory cannot be captured in a CUDA graph. Made here it is
copied the first time (a warm-up call) and read from the device after. Callers must not write into it.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=256)
def on(device: torch.device, values: tuple, dtype: torch.dtype) -> torch.Tensor:
    """``torch.tensor(values, dtype=dtype, device=device)``, made once (``values``: nested tuples of numbers)."""
    return torch.tensor(values, dtype=dtype, device=device)
