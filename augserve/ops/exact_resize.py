"""Antialiased bilinear resize of uint8 images, bit-exact with torch's CPU kernel, for a batch of crops.

``torchvision.transforms.v2.functional.resized_crop(img, top, left, h, w, size, antialias=True)`` on a
uint8 CPU image slices the crop and runs torch's ``_upsample_bilinear2d_aa`` uint8 kernel
(``aten/src/ATen/native/cpu/UpSampleKernel.cpp``, and its AVX2 twin ``UpSampleKernelAVXAntialias.h``,
which uses the same int16 weights and rounding). Per axis, that kernel:

* computes PIL's triangle-filter weights in float64 in crop coordinates: ``scale = crop / out``,
  ``center = scale * (i + 0.5)``, ``support = max(scale, 1)``, taps ``xmin .. xmin + xsize`` with
  ``xmin = max(int(center - support + 0.5), 0)`` and ``xsize = min(int(center + support + 0.5), crop) - xmin``,
  ``w = max(0, 1 - |(x - center + 0.5) / max(scale, 1)|)``, normalized by their sum taken left to right;
* picks one fixed-point precision ``p`` for the whole axis from its largest weight: the first ``p`` in
  0..21 with ``int(0.5 + w_max * 2**(p + 1)) >= 2**15``, else 22 (``p`` is 14 to 22 in practice);
* stores each weight as the int16 ``int(0.5 + w * 2**p)``;
* filters every output as ``clamp((sum(w_int * pixel) + 2**(p - 1)) >> p, 0, 255)``.

It runs the horizontal pass first, then the vertical one on the uint8 result, and skips a pass whose side
keeps its size. A skipped pass equals the identity weights computed here (one tap of ``2**14`` at
``p = 14``), so this module never skips. (torch's generic, non-AVX2 loop, which torchvision reaches on
ARM or with more than 4 channels, repeats the first output row when the output is 1 pixel wide and the
height changes; this module, like the AVX2 kernel, gives every row its own weights.)

Here each sample's crop gets its own weights, and so its own precision, written as dense float64
matrices over the whole input axis (zero outside the sample's taps). Each pass is then one float64
batched matrix product: every product and partial sum is an integer far below 2**53, so any summation
order is exact and a GPU (or any BLAS) returns the same bits as torch's CPU kernel, for every sample
whatever batch it is in. Shapes depend only on (B, C, H, W) and the output size and nothing reads
values back to the host, so the op can be captured in a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from augserve import device_constants

INT16_LIMIT = 2**15  # torch's int16 weights stay below this
PRECISION_CANDIDATES = 22  # torch tries precisions 0..21, else keeps 22
PIXEL_MAX = 255


def _max_taps(in_size: int, out_size: int) -> int:
    """Taps per output for any crop of an ``in_size`` axis: torch's ``ceil(support) * 2 + 1`` at its largest."""
    return 2 * -(-in_size // out_size) + 1


@dataclass
class AxisTaps:
    """Each sample's fixed-point filter along one axis, compact: what ``dense`` spreads over the whole axis.

    Small enough to be worked out where the crop boxes are drawn (on the host, in the device plan) and
    copied with them: the device then only scatters them into matrices.
    """

    fixed: torch.Tensor  # (B, out, taps) int16: torch's weights of each output's taps
    first: torch.Tensor  # (B, out) int32: the input index of each output's first tap
    one: torch.Tensor  # (B,) float64: 2**p for the sample's precision p, the divisor of the rounding shift


def axis_taps(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int) -> AxisTaps:
    """The filters of each sample's crop ``[start, start + length)`` of an ``in_size`` axis resized to
    ``out_size``; ``start`` and ``length`` are (B,) integer tensors, and everything runs on their device."""
    device = start.device
    taps = _max_taps(in_size, out_size)
    scale = (length.to(torch.float64) / out_size)[:, None, None]  # (B, 1, 1)
    support = torch.where(scale >= 1.0, scale, 1.0)  # bilinear: interp_size * 0.5 = 1
    invscale = torch.where(scale >= 1.0, 1.0 / scale, 1.0)
    max_interp = torch.ceil(support) * 2 + 1
    center = scale * (torch.arange(out_size, device=device, dtype=torch.float64)[:, None] + 0.5)  # (B, out, 1)
    xmin = torch.trunc(center - support + 0.5).clamp(min=0)
    xsize = torch.minimum(torch.trunc(center + support + 0.5), length.to(torch.float64)[:, None, None]) - xmin
    xsize = torch.minimum(xsize.clamp(min=0), max_interp)  # torch's guard; never binds for bilinear

    j = torch.arange(taps, device=device, dtype=torch.float64)  # (taps,)
    distance = ((j + xmin - center + 0.5) * invscale).abs()
    weights = torch.where((j < xsize) & (distance < 1.0), 1.0 - distance, 0.0)  # (B, out, taps)
    total = weights[..., 0]
    for tap in range(1, taps):  # left to right, as torch sums (adding the zero taps is exact)
        total = total + weights[..., tap]
    weights = weights / total[..., None]

    # 2**k for k = 0..22, exact: products of twos (no pow, no host-to-device copy).
    powers = torch.full((PRECISION_CANDIDATES + 1,), 2.0, dtype=torch.float64, device=device).cumprod(0) / 2
    w_max = weights.amax(dim=(1, 2))  # (B,)
    too_small = torch.floor(0.5 + w_max[:, None] * powers[1 : PRECISION_CANDIDATES + 1]) < INT16_LIMIT
    one = powers[too_small.sum(dim=1)]  # monotone in p: the count of misses is the first hit
    fixed = torch.floor(weights * one[:, None, None] + 0.5)  # weights >= 0: torch's int(0.5 + v)
    first = start[:, None] + xmin[..., 0].to(torch.int64)
    return AxisTaps(fixed.to(torch.int16), first.to(torch.int32), one)


def dense(taps: AxisTaps, in_size: int) -> torch.Tensor:
    """(B, out, in_size) float64 matrices holding each output's taps at their input columns, zero elsewhere.

    Tap j of output i sits at column first_i + j: distinct columns per row, so the scatter is deterministic;
    taps past the crop are zero, and those past the axis land in the padding cut off here.
    """
    batch, out_size, count = taps.fixed.shape
    column = taps.first.to(torch.int64)[..., None] + torch.arange(count, device=taps.fixed.device)
    padded = torch.zeros(batch, out_size, in_size + count, dtype=torch.float64, device=taps.fixed.device)
    return padded.scatter_(2, column, taps.fixed.to(torch.float64))[..., :in_size]


def _shift(acc: torch.Tensor, one: torch.Tensor) -> torch.Tensor:
    """torch's ``clamp((acc + 2**(p - 1)) >> p, 0, 255)`` on exact float64 integers; ``one`` is (B,) ``2**p``."""
    one = one.view(-1, 1, 1)
    return torch.floor((acc + one / 2) / one).clamp_(0, PIXEL_MAX)


def crop_taps(boxes: torch.Tensor, height: int, width: int, size: tuple[int, int]) -> tuple[AxisTaps, AxisTaps]:
    """Row and column filters of (top, left, height, width) boxes of an image resized to ``size``."""
    top, left, crop_h, crop_w = boxes.unbind(dim=1)
    return axis_taps(top, crop_h, height, size[0]), axis_taps(left, crop_w, width, size[1])


def resample(x: torch.Tensor, rows: AxisTaps, cols: AxisTaps) -> torch.Tensor:
    """(B, C, H, W) filtered by each sample's row and column taps (on x's device; taps of one sample serve all):
    horizontal pass first, then vertical. uint8 is rounded and clamped after each pass as torch's kernel does;
    float stays float (weights ``fixed / one``, within 2**-14 of torchvision's, summed in float64)."""
    batch, channels, height, width = x.shape
    out_h, out_w = rows.fixed.shape[1], cols.fixed.shape[1]
    exact = x.dtype == torch.uint8
    finish = _shift if exact else (lambda acc, one: acc / one.view(-1, 1, 1))
    # Rows outermost, (B, H, C, W), so that both passes are plain batched products over (B,).
    lines = x.transpose(1, 2).reshape(batch, height * channels, width).to(torch.float64)
    wide = finish(lines @ dense(cols, width).mT, cols.one).view(batch, height, channels * out_w)
    out = finish(dense(rows, height) @ wide, rows.one).to(x.dtype).view(batch, out_h, channels, out_w)
    return out.transpose(1, 2).contiguous()


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop every sample to its own box and resize it to ``size`` (antialiased bilinear).

    x (B, C, H, W) on any device; boxes (B, 4) int64 (top, left, height, width), each inside the image with
    height, width >= 1. For uint8 the result equals ``TF.resized_crop(x[i:i+1], *boxes[i], size=list(size),
    antialias=True)`` on the CPU bit for bit, per sample; float images come out within 1e-4 of it.
    """
    rows, cols = crop_taps(boxes.to(x.device), x.shape[-2], x.shape[-1], size)
    return resample(x, rows, cols)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize the whole batch to ``size``: ``TF.resize(x, list(size), antialias=True)`` for uint8, bit for bit."""
    batch, _, height, width = x.shape
    box = device_constants.on(x.device, (0, 0, height, width), torch.int64)
    return resized_crop(x, box.expand(batch, 4), size)
