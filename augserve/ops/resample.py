"""Resampling along the last axis with per-sample positions: the core of every time warp."""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy.interpolate import CubicSpline

from augserve import device_constants


def interp(query: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp`` per row: query (B, N), increasing knots xp (B, K), values fp (B, K) -> (B, N)."""
    right = torch.searchsorted(xp.contiguous(), query.contiguous(), right=True).clamp(1, xp.shape[1] - 1)
    left = right - 1
    x0, x1 = xp.gather(1, left), xp.gather(1, right)
    y0, y1 = fp.gather(1, left), fp.gather(1, right)
    fraction = ((query - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0.0, 1.0)
    return y0 + fraction * (y1 - y0)


INTERPOLATIONS = ("linear", "nearest")


def sample_last_axis(x: torch.Tensor, positions: torch.Tensor, interpolation: str = "linear") -> torch.Tensor:
    """x (B, ..., T) read at fractional positions (B, T_out), per sample: linearly interpolated, or the
    nearest step's value (``nearest``: no averaging of neighbours, so spikes keep their height).

    Positions are clamped to [0, T - 1]; every axis between batch and time is
    resampled the same way (all channels, all frequencies).
    """
    length = x.shape[-1]
    positions = positions.to(x.dtype).clamp(0, length - 1)
    view = (x.shape[0],) + (1,) * (x.dim() - 2) + (positions.shape[1],)
    shape = x.shape[:-1] + (positions.shape[1],)
    if interpolation == "nearest" or length == 1:
        return x.gather(-1, positions.round().to(torch.int64).view(view).expand(shape))
    # The step below a position, at most the second-last: the last position then reads the last two
    # steps with weight 1, which lerp returns exactly. Truncation is floor here (positions >= 0).
    low = positions.to(torch.int64).clamp_(max=length - 2)
    fraction = positions.sub_(low).view(view).expand(shape)
    index = low.view(view).expand(shape)
    return x.gather(-1, index).lerp_(x[..., 1:].gather(-1, index), fraction)


@functools.lru_cache(maxsize=64)
def _host_spline_basis(knots: int, length: int) -> torch.Tensor:
    """(knots, length) weights: row k is the cubic spline through the k-th unit vector.

    A spline is linear in its knot values, so a batch of knot vectors is
    interpolated as a weighted sum of these rows.
    """
    at = np.linspace(0, length - 1, knots)
    basis = CubicSpline(at, np.eye(knots), axis=0)(np.arange(length))  # (length, knots)
    return torch.from_numpy(basis.T.astype(np.float32))


def _spline_basis(knots: int, length: int, device: torch.device) -> torch.Tensor:
    """``_host_spline_basis`` on ``device``, copied there once."""
    return device_constants.cached(device, ("spline basis", knots, length),
                                   lambda: _host_spline_basis(knots, length).to(device))


def smooth_curve(knots: torch.Tensor, length: int) -> torch.Tensor:
    """The cubic spline of ``length`` points through (N, K) knot values placed evenly from 0 to length-1.

    scipy's ``CubicSpline`` (not-a-knot ends), as in Um et al. 2017, evaluated for the whole batch
    from a cached basis. Every row must come out bit-identical in any batch, on any number of
    threads, for samples to replay. One matrix product is not: its blocking depends on the row
    count and, with 4 or more threads, on where a row falls in the split (even in fixed-shape
    chunks of 64 rows). A batched product of one row each is: every row is its own 1 x K product.
    """
    values = knots.to(torch.float32)
    if values.shape[1] < 2:
        return values[:, :1].expand(-1, length).contiguous()
    basis = _spline_basis(values.shape[1], length, values.device)
    return torch.bmm(values[:, None, :], basis.expand(values.shape[0], *basis.shape)).squeeze(1)
