"""Float results back to a batch's integer dtype."""

from __future__ import annotations

import torch


def like(out: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """``out.to(batch.dtype)``, truncating as torch casts; ``out`` must already lie in the dtype's range.

    On the CPU torch's direct float32 -> uint8 cast is scalar code: through int16 it is 2.5x faster
    (48 vs 119 us for 6x3x224x224 on the 2-core CPU) with the same result for every value in range.
    """
    if batch.dtype == torch.uint8 and out.is_floating_point() and not out.is_cuda:
        return out.to(torch.int16).to(torch.uint8)
    return out.to(batch.dtype)
