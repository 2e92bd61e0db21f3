"""Time-series augmentation (Um et al. 2017; Le Guennec et al. 2016; Iwana & Uchida 2021), batched.

Inputs are float (B, C, T). Every op takes per-sample random draws and builds
either a multiplicative/additive curve or a map of source positions, applied to
the whole batch in one pass. Warps move all channels of a sample together, so
multivariate series stay aligned.
"""

from __future__ import annotations

import torch

from augserve.ops.resample import interp, smooth_curve


def warp_positions(speed_knots: torch.Tensor, length: int) -> torch.Tensor:
    """Monotonic source positions (B, T) from per-sample speed knots (B, K): first and last fixed.

    The speed curve through the knots is integrated and rescaled to [0, T - 1]
    (Um et al.'s time warp); speeds are floored at 1% so time never runs backwards.
    """
    speed = smooth_curve(speed_knots, length).clamp_(min=0.01)
    elapsed = torch.cumsum(speed, dim=1).sub_(speed[:, :1])
    positions = elapsed.mul_((length - 1) / elapsed[:, -1:].clamp(min=1e-12))
    positions[:, -1] = length - 1  # exact, whatever the float rounding
    return positions


def window_slice_positions(u_start: torch.Tensor, ratio: float, length: int) -> torch.Tensor:
    """A window of ceil(ratio * T) steps at a uniform start, stretched back to T steps."""
    window = max(1, int(torch.tensor(ratio * length).ceil()))
    start = (u_start.double() * (length - window + 1)).floor()
    steps = torch.linspace(0, window - 1, length, device=u_start.device, dtype=torch.float64)
    return start[:, None] + steps[None, :]


def window_warp_positions(u_start: torch.Tensor, scale: torch.Tensor, ratio: float, length: int) -> torch.Tensor:
    """One window of ceil(ratio * T) steps played ``scale`` times slower, the series resampled to T."""
    window = max(1, min(length - 1, int(torch.tensor(ratio * length).ceil())))
    start = (u_start.double() * (length - window)).floor()
    last = float(length - 1)
    source = torch.stack([torch.zeros_like(start), start, start + window, torch.full_like(start, last)], dim=1)
    stretched = source.clone()
    stretched[:, 2:] += window * (scale.double()[:, None] - 1.0)
    stretched *= last / stretched[:, 3:]
    frames = torch.arange(length, device=start.device, dtype=torch.float64).expand(start.shape[0], -1)
    return interp(frames, stretched, source)


def permutation_positions(u_cuts: torch.Tensor, segments: torch.Tensor, order: torch.Tensor,
                          length: int) -> torch.Tensor:
    """Cut each series into ``segments`` (B,) pieces at sorted random points and reorder them.

    ``u_cuts`` (B, S - 1) places the cuts, ``order`` (B, S) is a permutation per sample;
    pieces beyond a sample's count are empty. Returns integer source positions (B, T).
    """
    batch, slots = order.shape
    cuts = (u_cuts.double() * (length - 1)).floor().to(torch.int64) + 1  # in [1, T - 1]
    unused = torch.arange(1, slots, device=cuts.device)[None, :] >= segments[:, None]
    cuts = torch.where(unused, torch.full_like(cuts, length), cuts).sort(dim=1).values
    edges = torch.cat([torch.zeros(batch, 1, dtype=torch.int64, device=cuts.device), cuts,
                       torch.full((batch, 1), length, dtype=torch.int64, device=cuts.device)], dim=1)
    starts, sizes = edges[:, :-1], edges[:, 1:] - edges[:, :-1]
    moved_sizes = sizes.gather(1, order)
    moved_starts = starts.gather(1, order)
    out_starts = torch.cumsum(moved_sizes, dim=1) - moved_sizes
    frames = torch.arange(length, device=cuts.device).expand(batch, -1)
    piece = torch.searchsorted(out_starts + moved_sizes, frames.contiguous(), right=True).clamp(max=slots - 1)
    return moved_starts.gather(1, piece) + frames - out_starts.gather(1, piece)


def drift_curve(steps: torch.Tensor, length: int) -> torch.Tensor:
    """tsaug's Drift trend: a smooth curve through a Gaussian random walk (N, K), 0 at the start,
    scaled so its peak |value| is 1. Multiply by the drift amount and the series' range."""
    walk = smooth_curve(torch.cumsum(steps, dim=1), length)
    walk = walk - walk[:, :1]
    return walk / walk.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
