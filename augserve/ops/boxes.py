"""Random boxes as torchvision draws them for RandomResizedCrop and RandomErasing, vectorized."""

from __future__ import annotations

import math

import torch

Uniforms = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Side = int | torch.Tensor  # one size for the batch, or one per sample (B,) int64 (images of different sizes)


def sample_boxes(uniforms: Uniforms, height: Side, width: Side, scale: tuple[float, float],
                 ratio: tuple[float, float], *, erasing: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """First valid of several area / aspect-ratio draws per sample.

    ``uniforms`` are four ``(B, attempts)`` tensors in [0, 1) for area, log-ratio,
    top and left. With ``erasing=False`` the ratio is width/height and a box may
    fill the image (RandomResizedCrop); with ``erasing=True`` it is height/width and
    the box must be strictly smaller (RandomErasing). Returns (B, 4) int64 boxes
    ``(top, left, height, width)`` and a (B,) mask of samples where an attempt fitted.
    """
    device = uniforms[0].device  # sides live beside the uniforms (a (1, 1) CPU tensor cannot mix with CUDA ones)
    height, width = (torch.as_tensor(side, device=device).reshape(-1, 1) for side in (height, width))
    u_area, u_ratio, u_top, u_left = (u.to(torch.float64) for u in uniforms)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    long_side = torch.round(torch.sqrt(area * aspect)).to(torch.int64)
    short_side = torch.round(torch.sqrt(area / aspect)).to(torch.int64)
    if erasing:
        h, w = long_side, short_side
        valid = (h < height) & (w < width)
    else:
        h, w = short_side, long_side
        valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    top = (u_top * (height - h + 1).clamp(min=1)).to(torch.int64)
    left = (u_left * (width - w + 1).clamp(min=1)).to(torch.int64)
    first = torch.argmax(valid.to(torch.int8), dim=1, keepdim=True)
    boxes = torch.cat([t.gather(1, first) for t in (top, left, h, w)], dim=1)
    return boxes, valid.any(dim=1)
