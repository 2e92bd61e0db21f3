"""Mixup, CutMix and label smoothing with honest soft labels, vectorized over the batch.

Semantics follow timm's ``Mixup`` (Zhang et al. 2018; Yun et al. 2019), with
three differences: every mode is vectorized (no per-sample loop), any batch size
works (partners come from a random cyclic order, so nobody mixes with itself
when B >= 2), and the CutMix label weight is the pasted area to the pixel by
default. ``lam`` is always the weight of a sample's own content; its partner
contributes ``1 - lam``.

CutMix region per modality: images ``(B, C, H, W)`` paste an H x W box;
sequences (spectrograms ``(B, [C,] F, T)`` and time series ``(B, C, T)``) paste
a span of the last (time) axis across all other axes; tables ``(B, F)`` paste a
uniformly random subset of columns (columns have no order that a span would respect).
"""

from __future__ import annotations

import torch
from scipy.special import betaincinv


def beta_from_uniform(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """Beta(alpha, alpha) by the inverse CDF of given uniforms: replayable, exact in distribution."""
    lam = betaincinv(alpha, alpha, u.detach().cpu().double().numpy())
    return torch.from_numpy(lam).to(u.device)


def cyclic_partners(order: torch.Tensor) -> torch.Tensor:
    """Each sample mixes with the next one in ``order`` (a permutation): no self-pairs for B >= 2."""
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    return partner


def pair_partners(order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive samples in ``order`` swap with each other; with odd B the last one keeps itself.

    Returns (partner, leader): ``leader[i]`` is the pair member whose draws the pair shares.
    """
    paired = order.numel() - order.numel() % 2
    firsts, seconds = order[0:paired:2], order[1:paired:2]
    partner = torch.arange(order.numel(), device=order.device)
    leader = partner.clone()
    partner[firsts], partner[seconds] = seconds, firsts
    leader[seconds] = firsts
    return partner, leader


def _clipped_cut(size: int, fraction: torch.Tensor, u_center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's rand_bbox along one axis: a cut of int(size * fraction) around a uniform centre, clipped."""
    cut = (size * fraction).to(torch.int64)
    center = (u_center.double() * size).to(torch.int64)
    low = (center - cut // 2).clamp(0, size)
    high = (center + cut // 2).clamp(0, size)
    return low, high - low


def _minmax_cut(size: int, minmax: tuple[float, float], u_len: torch.Tensor,
                u_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's rand_bbox_minmax along one axis: a length in [min, max) * size at a uniform start."""
    low_len, high_len = int(size * minmax[0]), int(size * minmax[1])
    length = low_len + (u_len.double() * max(high_len - low_len, 1)).to(torch.int64)
    length = length.clamp(max=size)
    start = (u_start.double() * (size - length + 1)).to(torch.int64)
    return start, length


def cut_regions(lam: torch.Tensor, shape: tuple[int, ...], uniforms: torch.Tensor,
                minmax: tuple[float, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix regions for drawn ``lam`` and the lam they really give (1 - pasted fraction).

    ``shape`` is (H, W) for boxes or (T,) for spans; ``uniforms`` is (B, 4).
    Returns regions (B, 2 * len(shape)): the starts of every axis, then the
    lengths ((top, left, height, width) for boxes, (start, length) for spans),
    and the area-corrected lam.
    """
    starts, lengths, kept = [], [], torch.ones_like(lam, dtype=torch.float64)
    side = torch.sqrt(1.0 - lam) if len(shape) == 2 else 1.0 - lam
    for axis, size in enumerate(shape):
        if minmax is None:
            start, length = _clipped_cut(size, side, uniforms[:, axis])
        else:
            start, length = _minmax_cut(size, minmax, uniforms[:, axis], uniforms[:, 2 + axis])
        starts.append(start)
        lengths.append(length)
        kept = kept * (length.double() / size)
    return torch.stack(starts + lengths, dim=1), 1.0 - kept


def cut_columns(lam: torch.Tensor, columns: int, u_rank: torch.Tensor, uniforms: torch.Tensor,
                minmax: tuple[float, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix for tables: ``round((1 - lam) * F)`` columns per sample (with ``minmax``: a count as timm's
    minmax cut draws a length), chosen uniformly at random by ranking per-(sample, column) uniforms
    ``u_rank`` (B, F). Returns the pasted columns (B, F) bool and the lam they give, ``1 - count / F`` exactly."""
    if minmax is None:
        count = torch.round((1.0 - lam) * columns).to(torch.int64)
    else:
        count = _minmax_cut(columns, minmax, uniforms[:, 0], uniforms[:, 2])[1]
    return chosen_columns(u_rank, count), 1.0 - count.double() / columns


def chosen_columns(u: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """(B, F) bool: ``count[i]`` columns of row i, uniformly at random: those whose uniform ranks below the
    count (ties broken by column, so exactly ``count[i]`` of them)."""
    rank = torch.argsort(torch.argsort(u, dim=1, stable=True), dim=1, stable=True)
    return rank < count[:, None]


def region_mask(regions: torch.Tensor, shape: tuple[int, ...], ndim: int) -> torch.Tensor:
    """Boolean mask broadcastable to a batch of rank ``ndim``: True inside each sample's region."""
    mask = torch.ones(regions.shape[0], *shape, dtype=torch.bool, device=regions.device)
    for axis, size in enumerate(shape):
        start = regions[:, axis].view(-1, *([1] * len(shape)))
        length = regions[:, len(shape) + axis].view(-1, *([1] * len(shape)))
        view = [1] * len(shape)
        view[axis] = size
        position = torch.arange(size, device=regions.device).view(1, *view)
        mask &= (position >= start) & (position < start + length)
    return mask.view(regions.shape[0], *([1] * (ndim - 1 - len(shape))), *shape)


def cutmix(x: torch.Tensor, other: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Paste ``other`` inside ``mask``; every output value comes from x or other."""
    return torch.where(mask, other, x)


def mix_labels(labels: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """lam * y + (1 - lam) * y[partner]: rows still sum to 1."""
    weight = lam.to(torch.float32).view(-1, 1)
    return labels * weight + labels.index_select(0, partner) * (1.0 - weight)


def smooth_labels(labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """(1 - eps) * y + eps / K: a one-hot row becomes eps/K off, 1 - eps + eps/K on."""
    return labels * (1.0 - epsilon) + epsilon / labels.shape[1]

