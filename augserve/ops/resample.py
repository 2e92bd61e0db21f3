"""Resampling along the last axis with per-sample positions: the core of every time warp."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def interp(query: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp`` per row: query (B, N), increasing knots xp (B, K), values fp (B, K) -> (B, N)."""
    right = torch.searchsorted(xp.contiguous(), query.contiguous(), right=True).clamp(1, xp.shape[1] - 1)
    left = right - 1
    x0, x1 = xp.gather(1, left), xp.gather(1, right)
    y0, y1 = fp.gather(1, left), fp.gather(1, right)
    fraction = ((query - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0.0, 1.0)
    return y0 + fraction * (y1 - y0)


def sample_last_axis(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of x (B, ..., T) at fractional positions (B, T_out), per sample.

    Positions are clamped to [0, T - 1]; every axis between batch and time is
    resampled the same way (all channels, all frequencies).
    """
    length = x.shape[-1]
    positions = positions.to(x.dtype).clamp(0, length - 1)
    low = positions.floor().to(torch.int64).clamp(max=length - 1)
    high = (low + 1).clamp(max=length - 1)
    fraction = positions - low.to(x.dtype)
    view = (x.shape[0],) + (1,) * (x.dim() - 2) + (positions.shape[1],)
    shape = x.shape[:-1] + (positions.shape[1],)
    below = x.gather(-1, low.view(view).expand(shape))
    above = x.gather(-1, high.view(view).expand(shape))
    return below.lerp_(above, fraction.view(view).expand(shape))


def smooth_curve(knots: torch.Tensor, length: int) -> torch.Tensor:
    """A smooth curve of ``length`` points through (N, K) knot values placed evenly from 0 to length-1.

    Cubic convolution interpolation (``F.interpolate(mode="bicubic", align_corners=True)``)
    passes through every knot, as the cubic splines of Um et al. 2017 do.
    """
    curve = F.interpolate(knots.to(torch.float32)[:, None, None, :], size=(1, length), mode="bicubic",
                          align_corners=True)
    return curve[:, 0, 0, :]
