"""Random erasing (Zhong et al. 2017) with torchvision's box semantics, per sample."""

from __future__ import annotations

import torch


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) boolean mask of each sample's (top, left, height, width) box."""
    top, left, h, w = (t.view(-1, 1, 1, 1) for t in boxes.unbind(dim=1))
    rows = torch.arange(height, device=boxes.device).view(1, 1, -1, 1)
    cols = torch.arange(width, device=boxes.device).view(1, 1, 1, -1)
    return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)


def erase(x: torch.Tensor, boxes: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Replace each sample's box by ``value`` (broadcastable to x: per-channel or per-pixel)."""
    mask = box_mask(boxes.to(x.device), x.shape[-2], x.shape[-1])
    return torch.where(mask, value.to(x.dtype), x)
