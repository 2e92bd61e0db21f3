"""Run a different kernel on each group of samples without a per-sample loop.

Each group's samples are gathered by index (``index_select``), processed by its
kernel in one call and written back by index (``index_copy_`` on wide words). On the CPU this is
several times faster than boolean-mask gather/scatter (``x[mask]``, ``out[mask] = ...``),
and on the GPU it launches one kernel per group rather than per sample.

Inside ``plan.branch_free()`` every kernel runs over the whole batch instead and each sample's result is
selected (``torch.where``): more arithmetic, but no host read and the same kernels whatever was drawn.

On the CPU a large group is processed in tiles of a few samples whose float
working set stays in cache (several times faster for warps; see bench/RESULTS.md).
Results are identical either way, since every sample's parameters are its own.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from augserve import device_constants
from augserve.ops import plan

# kernel(samples of the group, their indices in the original batch) -> processed samples; the indices are a
# tensor, or ``ALL`` (a slice: reading a per-sample tensor through it is a view, no kernel) for the whole batch
GroupKernel = Callable[[torch.Tensor, "torch.Tensor | slice"], torch.Tensor]
ALL = slice(None)
CPU_TILE_BYTES = 4 << 20  # float32 working set per kernel call on the CPU


def tiles(x: torch.Tensor) -> list[slice]:
    """Batch slices to process one at a time: the whole batch on the GPU, cache-sized on the CPU."""
    per_sample = max(x[0].numel() * 4, 1)
    tile = x.shape[0] if x.is_cuda else max(1, CPU_TILE_BYTES // per_sample)
    return [slice(start, min(start + tile, x.shape[0])) for start in range(0, x.shape[0], tile)]


def _run(kernel: GroupKernel, samples: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    parts = tiles(samples)
    if len(parts) == 1:
        return kernel(samples, index)
    return torch.cat([kernel(samples[part], index[part]) for part in parts])


def apply_by_group(x: torch.Tensor, group: torch.Tensor, kernels: Mapping[int, GroupKernel],
                   in_place: bool = False) -> torch.Tensor:
    """``out[i] = kernels[group[i]](x[i])``; groups without a kernel pass through unchanged.

    Each group is gathered once (``index_select``) and its result written back once (``index_copy_``);
    samples without a kernel are neither read nor written. ``in_place`` writes into ``x`` itself
    (for a caller that owns it), which spares a copy of the untouched samples.
    """
    if plan.is_branch_free():
        return _select(x, group, kernels)
    present = torch.unique(group).tolist()
    active = [g for g in present if g in kernels]
    if not active:
        return x
    if len(present) == 1:
        return _run(kernels[present[0]], x, torch.arange(x.shape[0], device=x.device))
    out = x if in_place else (torch.empty_like(x) if len(active) == len(present) else x.clone())
    for g in active:
        index = torch.nonzero(group == g).flatten()
        _copy_rows(out, index, _run(kernels[g], x.index_select(0, index), index))
    return out


def _select(x: torch.Tensor, group: torch.Tensor, kernels: Mapping[int, GroupKernel]) -> torch.Tensor:
    """Every kernel over the whole batch, each sample's result selected by its group: a fixed set of kernels
    whatever the groups hold. Rows are computed independently, so a sample's result is the grouped plan's."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    chosen = group[:, None] == device_constants.on(group.device, tuple(kernels), group.dtype)  # (B, groups)
    out = x
    for column, (g, kernel) in enumerate(kernels.items()):
        result = kernel(x, ALL)
        if result.dtype != x.dtype or result.shape != x.shape:  # where() would promote or broadcast in silence
            raise TypeError(f"group {g}: its kernel returned {result.dtype} {tuple(result.shape)} for "
                            f"{x.dtype} {tuple(x.shape)}")
        out = torch.where(chosen[:, column].view(shape), result, out)
    return out


def _copy_rows(out: torch.Tensor, index: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``out.index_copy_(0, index, rows)``, moving wide words where the layout allows: the CPU kernel copies
    element by element, so a uint8 batch viewed as int64 is written 7x faster (bench/RESULTS.md)."""
    word = _common_word(out, rows)
    if word is None:
        return out.index_copy_(0, index, rows)
    out.view(out.shape[0], -1).view(word).index_copy_(0, index, rows.view(rows.shape[0], -1).view(word))
    return out


def _common_word(*tensors: torch.Tensor) -> torch.dtype | None:
    """The widest integer type that every contiguous (B, ...) tensor's rows and offset divide into, or None."""
    if not all(t.shape[0] and t.is_contiguous() for t in tensors):
        return None
    sizes = [t.element_size() * n for t in tensors for n in (t[0].numel(), t.storage_offset())]
    for word in (torch.int64, torch.int32, torch.int16):
        if word.itemsize > tensors[0].element_size() and not any(size % word.itemsize for size in sizes):
            return word
    return None


def apply_where(x: torch.Tensor, mask: torch.Tensor, kernel: GroupKernel) -> torch.Tensor:
    """Run ``kernel`` on the samples selected by the boolean ``mask``; the rest pass through."""
    return apply_by_group(x, mask.to(torch.int64), {1: kernel})
