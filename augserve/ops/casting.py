"""Float results back to a batch's integer dtype."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF


def like(out: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """``out.to(batch.dtype)``, truncating as torch casts; ``out`` must already lie in the dtype's range.

    On the CPU torch's direct float32 -> uint8 cast is scalar code: through int16 it is 2.5x faster
    (48 vs 119 us for 6x3x224x224 on the 2-core CPU) with the same result for every value in range.
    """
    if batch.dtype == torch.uint8 and out.is_floating_point() and not out.is_cuda:
        return out.to(torch.int16).to(torch.uint8)
    return out.to(batch.dtype)


def to_out_dtype(x: torch.Tensor, out_dtype: torch.dtype | None) -> torch.Tensor:
    """A pipeline's result in the dtype asked for (None: as it is); uint8 <-> float rescales 0..255 <-> 0..1."""
    if out_dtype is None or x.dtype == out_dtype:
        return x
    if x.dtype == torch.uint8 or out_dtype == torch.uint8:
        return TF.to_dtype(x, out_dtype, scale=True)
    return x.to(out_dtype)
