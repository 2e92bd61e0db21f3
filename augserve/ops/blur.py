"""Gaussian blur with its own sigma per sample, as torchvision's ``gaussian_blur`` computes it.

torchvision builds one 2-D kernel for the batch and convolves; here every sample has its own
sigma, so the separable kernel is applied as a weighted sum of shifted views of the reflect-padded
batch (one elementwise pass per tap and axis). Elementwise arithmetic keeps each sample's result
independent of the batch it is in, which a grouped convolution does not promise.
"""

from __future__ import annotations

import torch

from augserve.ops import casting


def gaussian_weights(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size) float32 taps of a normalized Gaussian per sample (torchvision's _get_gaussian_kernel1d)."""
    half = (size - 1) * 0.5
    offsets = torch.linspace(-half, half, steps=size, device=sigma.device)
    pdf = torch.exp(-0.5 * (offsets[None, :] / sigma.to(torch.float32)[:, None]).pow(2))
    return pdf / pdf.sum(dim=1, keepdim=True)


def _along(x: torch.Tensor, weights: torch.Tensor, axis: int) -> torch.Tensor:
    """Correlate every sample with its own taps along ``axis`` (-1 or -2) of an already padded batch."""
    size = weights.shape[1]
    length = x.shape[axis] - size + 1
    out = torch.zeros(*x.shape[:axis], length, *x.shape[axis:][1:], dtype=x.dtype, device=x.device)
    for tap in range(size):
        out.add_(x.narrow(axis, tap, length) * weights[:, tap].view(-1, 1, 1, 1))
    return out


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: tuple[int, int],
                  padding: str = "reflect") -> torch.Tensor:
    """Blur (B, C, H, W) images, sample b with ``sigma[b]`` on both axes and an odd (height, width) kernel.

    ``padding`` is torchvision's ``reflect`` or PIL's ``replicate`` (edge pixels extended).
    """
    rows, cols = kernel_size
    work = x if x.is_floating_point() else x.to(torch.float32)
    padded = torch.nn.functional.pad(work, [cols // 2, cols // 2, rows // 2, rows // 2], mode=padding)
    blurred = _along(_along(padded, gaussian_weights(sigma, cols), -1), gaussian_weights(sigma, rows), -2)
    return blurred if x.is_floating_point() else casting.like(blurred.round_(), x)
