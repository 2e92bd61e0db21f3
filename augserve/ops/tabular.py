"""Tabular kernels for float (B, F) batches: pure functions of (x, per-sample params), batched, branch-free.

Each is a fixed handful of element-wise kernels over the whole batch (no per-sample loop, no shape that
depends on what was drawn), so the grouped and the device plan run the same code and give the same bits.
"""

from __future__ import annotations

import torch


def other_rows(u: torch.Tensor) -> torch.Tensor:
    """A row index (B, F) int64 per entry, uniform over the batch's *other* rows, from uniforms ``u`` (B, F)
    in [0, 1): ``floor(u * (B - 1))``, moved one up from the entry's own row on. Needs B >= 2."""
    samples = u.shape[0]
    own = torch.arange(samples, device=u.device)[:, None]
    drawn = (u.double() * (samples - 1)).to(torch.int64).clamp(max=max(samples - 2, 0))
    return drawn + (drawn >= own).to(torch.int64)


def sources(mask: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """Where each entry's value comes from: ``partner`` where masked, its own row elsewhere (B, F) int64."""
    own = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(partner)
    return torch.where(mask, partner, own)


def take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``out[i, j] = x[rows[i, j], j]``: every value stays in its column (swap noise, marginal fill)."""
    return x.gather(0, rows)


def fill(x: torch.Tensor, mask: torch.Tensor, value: torch.Tensor | float) -> torch.Tensor:
    """``value`` (a number, or one per column (F,)) where ``mask`` (B, F), x elsewhere."""
    if not isinstance(value, torch.Tensor):
        return x.masked_fill(mask, value)
    return torch.where(mask, value.to(x.dtype), x)


def add_noise(x: torch.Tensor, noise: torch.Tensor, scale: torch.Tensor, noised: torch.Tensor) -> torch.Tensor:
    """``x + noise * scale`` where ``noised`` (B, F), x itself elsewhere (bit for bit); ``scale`` is per column."""
    return torch.where(noised, x + noise.to(x.dtype) * scale.to(x.dtype), x)


def column_means(x: torch.Tensor) -> torch.Tensor:
    """The batch's own column means (F,): they change with the batch."""
    return x.mean(dim=0)


def column_stds(x: torch.Tensor) -> torch.Tensor:
    """The batch's own population column stds (F,) (ddof 0, as ``table_stats``): they change with the batch."""
    return x.std(dim=0, correction=0)

