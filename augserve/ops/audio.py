"""SpecAugment (Park et al. 2019, 2020) on batched spectrograms (B, F, T) or (B, C, F, T).

Masks and warps are drawn per sample and applied to the whole batch at once.
The time warp is piecewise linear: the frame at ``center`` moves to
``center + distance`` and the frames on either side are stretched or squeezed
linearly, first and last frame fixed. This is the warp the paper's sparse
image warp performs along the time axis, without its smoothing kernel.
"""

from __future__ import annotations

import torch

from augserve.ops.resample import interp

FREQ_AXIS, TIME_AXIS = -2, -1


def mask_spans(u_width: torch.Tensor, u_start: torch.Tensor, max_width: torch.Tensor | int,
               length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, m) spans: width uniform in [0, max_width], start uniform in [0, length - width]."""
    max_width = torch.as_tensor(max_width, device=u_width.device).clamp(max=length)
    width = (u_width.double() * (max_width + 1)).to(torch.int64).clamp(max=max_width)
    start = (u_start.double() * (length - width + 1)).to(torch.int64)
    return start, width


def span_mask(start: torch.Tensor, width: torch.Tensor, length: int) -> torch.Tensor:
    """(B, length) boolean: True where any of a sample's spans covers the position."""
    position = torch.arange(length, device=start.device).view(1, 1, -1)
    inside = (position >= start[..., None]) & (position < (start + width)[..., None])
    return inside.any(dim=1)


def apply_mask(x: torch.Tensor, mask: torch.Tensor, axis: int, value: torch.Tensor) -> torch.Tensor:
    """Set the masked frequency rows or time columns of each sample to its ``value`` (B,)."""
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[axis] = x.shape[axis]
    return torch.where(mask.view(shape), value.to(x.dtype).view(-1, *([1] * (x.dim() - 1))), x)


def time_warp_positions(u_center: torch.Tensor, u_distance: torch.Tensor, window: int,
                        length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source frame for every output frame: (B, T) positions, plus the centres and distances drawn.

    centre uniform in [W, T - W), distance uniform in [-W, W]; needs T > 2W.
    """
    center = window + (u_center.double() * (length - 2 * window)).floor()
    distance = ((u_distance.double() * 2 - 1) * window).round()
    last = float(length - 1)
    xp = torch.stack([torch.zeros_like(center), center + distance, torch.full_like(center, last)], dim=1)
    fp = torch.stack([torch.zeros_like(center), center, torch.full_like(center, last)], dim=1)
    frames = torch.arange(length, device=center.device, dtype=torch.float64).expand(center.shape[0], -1)
    return interp(frames, xp, fp), center, distance

