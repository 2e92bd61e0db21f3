"""Color ops with one parameter per sample, matching torchvision v2 semantics.

torchvision's kernels take one scalar per call, so a batch with per-sample
factors would need a Python loop; these take a ``(B,)`` tensor instead. uint8
images are processed in float32 and cast back with torchvision's rounding rules
(truncate after blends, round after blurs) so results agree with it exactly or
within one grey level.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional._color import _rgb_to_hsv

from augserve import device_constants
from augserve.ops import casting

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def max_value(dtype: torch.dtype) -> float:
    return 255.0 if dtype == torch.uint8 else 1.0


def _per_sample(factor: torch.Tensor) -> torch.Tensor:
    return factor.to(torch.float32).view(-1, 1, 1, 1)


def _finish(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Clamp to the dtype's range and cast back (truncating, as torchvision does)."""
    out = out.clamp_(0, max_value(like.dtype))
    return out if like.is_floating_point() else casting.like(out, like)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.float32)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) in float, summed in torchvision's order and floored for integer images."""
    r, g, b = _as_float(x).unbind(dim=1)
    luma = r.mul(_GRAY_WEIGHTS[0]).add_(g, alpha=_GRAY_WEIGHTS[1]).add_(b, alpha=_GRAY_WEIGHTS[2]).unsqueeze(1)
    return luma if x.is_floating_point() else luma.floor_()


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """ratio * x + (1 - ratio) * other, per sample, in one float buffer."""
    ratio = _per_sample(ratio)
    out = x.mul(ratio) if x.is_floating_point() else x.to(torch.float32).mul_(ratio)
    return _finish(out.add_(other * (1.0 - ratio)), x)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    out = x.mul(_per_sample(factor)) if x.is_floating_point() else x.to(torch.float32).mul_(_per_sample(factor))
    return _finish(out, x)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with each image's mean luma. For uint8 the luma is whole grey levels, so their mean is taken from an
    exact float64 sum: the same value on any device and in any batch (a float32 sum is order-dependent past
    2**24, which a 256x256 image reaches), and torchvision's float32 mean wherever that one is exact."""
    gray = _gray(x) if x.shape[1] == 3 else _as_float(x)
    if x.is_floating_point():
        return _blend(x, gray.mean(dim=(1, 2, 3), keepdim=True), factor)
    mean = gray.to(torch.float64).sum(dim=(1, 2, 3), keepdim=True).div_(gray[0].numel()).to(torch.float32)
    return _blend(x, mean, factor)


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x.clone()
    return _blend(x, _gray(x), factor)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with a 3x3 smoothed copy; the one-pixel border is kept, as in PIL.

    The smoothing kernel is 1 everywhere and 5 in the centre, over 13: computed as
    a separable 3x3 box sum plus 4x the centre, which is exact on integer values
    and several times faster on the CPU than a depthwise ``conv2d``.
    """
    height, width = x.shape[-2:]
    if height <= 2 or width <= 2:
        return x.clone()
    out = x.to(torch.float32, copy=True)
    rows = out[..., :, :-2] + out[..., :, 1:-1] + out[..., :, 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    inner = out[..., 1:-1, 1:-1]
    blurred = box.add_(inner, alpha=4.0).div_(13.0)
    if not x.is_floating_point():
        blurred = blurred.round_()
    inner.add_(blurred.sub_(inner).mul_(1.0 - _per_sample(factor)))
    return _finish(out, x).to(x.dtype)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top ``bits`` (0..8) bits of each channel value."""
    bits = bits.to(torch.int64).view(-1, 1, 1, 1)
    if x.is_floating_point():
        levels = (1 << bits).to(x.dtype)
        return torch.minimum((x * levels).floor_(), levels - 1) / levels
    mask = ((1 << bits) - 1) << (8 - bits)
    return x & mask.to(torch.uint8)


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert values at or above the per-sample threshold (in the dtype's scale).

    The threshold is compared in float32, as torchvision compares a uint8 image with a Python float:
    a threshold computed in float64 just above an integer (e.g. 255 * (1 - 8/30) = 187.00000000000003)
    inverts from that integer, not from the next one.
    """
    threshold = threshold.to(torch.float32).view(-1, 1, 1, 1)
    if x.is_floating_point():
        return torch.where(x >= threshold.to(x.dtype), invert(x), x)
    # integer pixels: x >= t  <=>  x >= ceil(t); thresholds above 255 invert nothing.
    # x ^ 255 inverts uint8; the comparison viewed as uint8 (0 or 1) times 255, or 0 where nothing inverts,
    # is the mask: three passes over bytes.
    whole = torch.ceil(threshold).clamp(0, 256)
    inverts = (whole <= 255).to(torch.uint8).mul_(255)
    cut = torch.where(whole > 255, torch.zeros_like(whole), whole).to(torch.uint8)
    return x ^ (x >= cut).view(torch.uint8).mul_(inverts)


def solarize_add(x: torch.Tensor, add: torch.Tensor, threshold: float) -> torch.Tensor:
    """PIL's (timm's) SolarizeAdd: values below ``threshold`` get ``add`` more, clipped (the dtype's scale).

    uint8 pixels are raised in int16 by ``floor(add)`` (trunc(x + add) for every result the clip keeps):
    10x faster than a float pass and a ``where`` over bytes.
    """
    below = x < threshold
    if x.is_floating_point():
        return torch.where(below, (x + _per_sample(add).to(x.dtype)).clamp_(0.0, 1.0), x)
    lift = torch.floor(add).clamp(-256, 256).to(torch.int16).view(-1, 1, 1, 1)
    return x.to(torch.int16).addcmul_(below, lift).clamp_(0, 255).to(x.dtype)


def invert(x: torch.Tensor) -> torch.Tensor:
    return TF.invert(x)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``autocontrast`` bit for bit, with ``where`` in place of its boolean-mask assignments
    (a mask's count is read on the host: a sync on a GPU)."""
    if x.numel() == 0:
        return x
    bound = max_value(x.dtype)
    work = x if x.is_floating_point() else x.to(torch.float32)
    minimum = work.amin(dim=(-2, -1), keepdim=True)
    maximum = work.amax(dim=(-2, -1), keepdim=True)
    flat = maximum == minimum
    inv_scale = torch.where(flat, 1.0, maximum.sub_(minimum).mul_(1.0 / bound))
    minimum = torch.where(flat, 0.0, minimum)
    diff = work.sub(minimum) if x.is_floating_point() else work.sub_(minimum)
    return diff.div_(inv_scale).clamp_(0, bound).to(x.dtype)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """torchvision's (PIL's) histogram equalization per image and channel, bit for bit.

    The same lookup table as ``TF.equalize``, but an image it leaves alone (a single grey level) gets
    the identity table instead of a ``where`` over the batch: 1.6x faster on uint8 on the 2-core CPU.
    """
    if x.dtype != torch.uint8 or x.numel() == 0:
        return TF.equalize(x)
    flat = x.flatten(start_dim=-2).to(torch.int64)
    hist = flat.new_zeros(x.shape[:-2] + (256,), dtype=torch.int32)
    hist.scatter_add_(-1, flat, hist.new_ones(1).expand_as(flat))
    cumulative = hist.cumsum(dim=-1)
    below_max = flat.shape[-1] - hist.gather(-1, cumulative.argmax(dim=-1, keepdim=True))  # pixels under the top level
    step = below_max.div_(255, rounding_mode="floor")
    levels = cumulative[..., :-1].add_(step // 2).div_(step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(levels[..., :1]), levels], dim=-1)
    lut = torch.where(step > 0, lut, torch.arange(256, dtype=lut.dtype, device=x.device)).to(torch.uint8)
    return lut.gather(-1, flat).view_as(x)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma replicated over the input's channels (RandomGrayscale keeps C)."""
    if x.shape[1] == 1:
        return x.clone()
    return TF.rgb_to_grayscale(x, num_output_channels=3)


def hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` (in turns, [-0.5, 0.5]) per sample."""
    if x.shape[1] == 1:
        return x.clone()
    unit = TF.to_dtype(x, torch.float32, scale=True)
    hsv = _rgb_to_hsv(unit)  # torchvision's batched kernels; only the shift is per sample
    h = (hsv[:, 0] + shift.to(torch.float32).view(-1, 1, 1)).remainder_(1.0)
    rgb = _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))
    return TF.to_dtype(rgb, x.dtype, scale=True)


_HSV_SECTORS = ((0, 2, 1, 1, 3, 0), (3, 0, 0, 2, 1, 1), (1, 1, 3, 0, 0, 2))  # (v, p, q, t) index per sector


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_hsv_to_rgb`` for (B, 3, H, W), its sector table made once per device (it copies it on
    every call)."""
    h, s, v = hsv.unbind(dim=-3)
    h6 = h.mul(6)
    sector = torch.floor(h6)
    f = h6.sub_(sector)
    sector = sector.to(dtype=torch.int32)
    sxf = s * f
    one_minus_s = 1.0 - s
    q = (1.0 - sxf).mul_(v).clamp_(0.0, 1.0)
    t = sxf.add_(one_minus_s).mul_(v).clamp_(0.0, 1.0)
    p = one_minus_s.mul_(v).clamp_(0.0, 1.0)
    sector.remainder_(6)
    vpqt = torch.stack((v, p, q, t), dim=-3)
    select = device_constants.on(hsv.device, _HSV_SECTORS, torch.int64)[:, sector].moveaxis(0, -3)
    return vpqt.gather(-3, select)
