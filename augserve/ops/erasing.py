"""Random erasing (Zhong et al. 2017) with torchvision's box semantics, per sample."""

from __future__ import annotations

import math

import torch


def sample_erasing_boxes(
    uniforms: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's RandomErasing.get_params, vectorized over samples.

    ``uniforms`` are four ``(B, attempts)`` tensors for area, log-ratio, top, left.
    Returns (B, 4) int64 boxes ``(top, left, height, width)`` and a (B,) mask of
    samples where some attempt fitted (torchvision leaves the others untouched).
    """
    u_area, u_ratio, u_top, u_left = (u.to(torch.float64) for u in uniforms)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    erase_area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    h = torch.round(torch.sqrt(erase_area * aspect)).to(torch.int64)
    w = torch.round(torch.sqrt(erase_area / aspect)).to(torch.int64)
    valid = (h < height) & (w < width)
    top = (u_top * (height - h + 1).clamp(min=1)).to(torch.int64)
    left = (u_left * (width - w + 1).clamp(min=1)).to(torch.int64)
    first = torch.argmax(valid.to(torch.int8), dim=1, keepdim=True)
    boxes = torch.cat([t.gather(1, first) for t in (top, left, h, w)], dim=1)
    return boxes, valid.any(dim=1)


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
