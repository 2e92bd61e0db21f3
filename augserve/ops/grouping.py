"""Run a different kernel on each group of samples without a per-sample loop.

Samples are sorted by group once (``index_select``), each group is a contiguous
slice that its kernel processes in one call, the pieces are concatenated and
the batch is put back in order. On the CPU this is several times faster than
boolean-mask gather/scatter (``x[mask]``, ``out[mask] = ...``), and on the GPU it
launches one kernel per group rather than per sample.

On the CPU a large group is processed in tiles of a few samples whose float
working set stays in cache (several times faster for warps; see bench/RESULTS.md).
Results are identical either way, since every sample's parameters are its own.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

# kernel(samples of the group, their indices in the original batch) -> processed samples
GroupKernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
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


def apply_by_group(x: torch.Tensor, group: torch.Tensor, kernels: Mapping[int, GroupKernel]) -> torch.Tensor:
    """``out[i] = kernels[group[i]](x[i])``; groups without a kernel pass through unchanged."""
    present = torch.unique(group).tolist()
    if not any(g in kernels for g in present):
        return x
    if len(present) == 1:
        return _run(kernels[present[0]], x, torch.arange(x.shape[0], device=x.device))
    order = torch.argsort(group, stable=True)
    ordered = x.index_select(0, order)
    counts = torch.bincount(group.index_select(0, order) - min(present)).tolist()
    pieces, start = [], 0
    for offset, count in enumerate(counts):
        if count == 0:
            continue
        piece = ordered[start:start + count]
        kernel = kernels.get(offset + min(present))
        pieces.append(piece if kernel is None else _run(kernel, piece, order[start:start + count]))
        start += count
    restore = torch.empty_like(order)
    restore[order] = torch.arange(order.numel(), device=order.device)
    return torch.cat(pieces).index_select(0, restore)


def apply_where(x: torch.Tensor, mask: torch.Tensor, kernel: GroupKernel) -> torch.Tensor:
    """Run ``kernel`` on the samples selected by the boolean ``mask``; the rest pass through."""
    return apply_by_group(x, mask.to(torch.int64), {1: kernel})
