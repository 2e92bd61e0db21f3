"""The normalize step's arithmetic, for torch tensors and numpy arrays alike.

One definition for the server's ``normalize`` step and for clients that run a deferred
normalize after the copy (uint8 on the wire, float where the batch lands): both give the same
float32 values, bit for bit, because both do the same float32 operations in the same order.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def normalize(x: Any, mean: Sequence[float], std: Sequence[float], out_dtype: str | None = None) -> Any:
    """(x - mean) / std per channel of a (B, C, ...) batch, mean and std on the [0, 1] scale (uint8 is
    divided by 255 first); float32 out, or ``out_dtype``. Never writes into ``x``."""
    if isinstance(x, np.ndarray):
        mean32, std32 = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        unit = np.float32(1.0 if np.issubdtype(x.dtype, np.floating) else 1.0 / 255.0)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        out = x.astype(np.float32)  # a copy
        out *= (np.reciprocal(std32) * unit).reshape(shape)  # torch computes unit / std so
        out -= (mean32 / std32).reshape(shape)
        return out if out_dtype is None else out.astype(out_dtype)
    import torch

    from augserve import device_constants

    mean32 = device_constants.on(x.device, tuple(mean), torch.float32)
    std32 = device_constants.on(x.device, tuple(std), torch.float32)
    unit = 1.0 if x.is_floating_point() else 1.0 / 255.0
    shape = (1, -1) + (1,) * (x.dim() - 2)
    out = x.to(torch.float32, copy=x.dtype == torch.float32)
    out = out.mul_((unit / std32).view(shape)).sub_((mean32 / std32).view(shape))
    return out if out_dtype is None else out.to(getattr(torch, out_dtype))
