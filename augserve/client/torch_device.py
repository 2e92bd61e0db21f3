"""Arrays as torch tensors on a device: the copy crosses the bus in the wire's dtype (uint8 for images)."""

from __future__ import annotations

import warnings

import numpy as np

from augserve.extras import require

NORMALIZE = ("client", "server")  # where a pipeline's final normalize runs: on the device after the copy, or before


def normalize_option(normalize: str) -> str:
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize: expected one of {', '.join(NORMALIZE)}, got {normalize!r}")
    return normalize


def as_tensor(value):
    """A numpy array (read-only views of received bytes are copied) or tensor as a writable torch tensor."""
    torch = require("torch", "torch tensors")
    if not isinstance(value, np.ndarray):
        return value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only arrays are copied below before any write
        return torch.from_numpy(value if value.flags.writeable else value.copy())


def to_device(value, device, non_blocking: bool = False):
    """``value`` as a tensor on ``device``, pinned first when it goes from host memory to CUDA."""
    torch = require("torch", "Batch.to")
    device = torch.device(device)
    value = as_tensor(value)
    if value.device == device:
        return value
    if device.type == "cuda" and value.device.type == "cpu" and not value.is_pinned():
        value = value.pin_memory()
    return value.to(device, non_blocking=non_blocking)
