"""What every augmentation policy applies: per-sample op choices run as one kernel call per op.

A policy (torchvision's or timm's) draws, for every sample and layer, an op of its space and that
op's argument; this module applies such a layer to a batch. Samples are grouped by op, so each
kernel runs once over its group, all geometric ops of a layer share one warp per
interpolation mode (timm picks bilinear or bicubic per op call), and torchvision's whole-pixel
translations move pixels without resampling.

An op's ``kernel`` names what it does with its value, in the units its library passes:
torchvision's signed magnitudes (``brightness``: factor - 1) or timm's PIL arguments
(``brightness_factor``: the factor, ``translate_x_rel``: a fraction of the width, PIL's direction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from augserve import device_constants
from augserve.ops import blur, color, geometry, grouping

# (value per sample, negate per sample, height, width) -> the op's argument per sample
Magnitude = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]
SKIP = -1  # op index of a sample that does nothing in a layer
RANDOM_INTERPOLATIONS = ("bilinear", "bicubic")  # timm's choice when its interpolation is "random"
BLUR_TAPS = 13  # taps of a per-sample Gaussian blur: 3 sigma either side of timm's largest radius (2.0)


@dataclass
class LayerParams:
    """Per-sample choices for a sequence of layers: op index into ``space``, op argument, interpolation."""

    space: tuple[PolicyOp, ...]
    op_index: torch.Tensor  # (B, layers) int64, SKIP where the sample is left alone
    value: torch.Tensor  # (B, layers) float64, in the op's own units (degrees, pixels, factor, bits, ...)
    interpolation: torch.Tensor | None = None  # (B, layers) index into RANDOM_INTERPOLATIONS, or the step's one


def _pil_blur(x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    return blur.gaussian_blur(x, radius.clamp(min=1e-3), (BLUR_TAPS, BLUR_TAPS), padding="replicate")


def _solarize_add(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    scale = color.max_value(x.dtype) / 255.0
    return color.solarize_add(x, add * scale, 128.0 * scale)


COLOR_KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    # torchvision: signed magnitudes (factor - 1), solarize threshold as a fraction of the maximum
    "brightness": lambda x, v: color.brightness(x, 1.0 + v),
    "color": lambda x, v: color.saturation(x, 1.0 + v),
    "contrast": lambda x, v: color.contrast(x, 1.0 + v),
    "sharpness": lambda x, v: color.sharpness(x, 1.0 + v),
    "solarize": lambda x, v: color.solarize(x, v * color.max_value(x.dtype)),
    "hue": lambda x, v: color.hue(x, v),
    # both
    "posterize": lambda x, v: color.posterize(x, v),
    "autocontrast": lambda x, v: color.autocontrast(x),
    "equalize": lambda x, v: color.equalize(x),
    "invert": lambda x, v: color.invert(x),
    # timm (PIL): enhance factors, thresholds and additions in 0..255 levels, blur radius
    "brightness_factor": lambda x, v: color.brightness(x, v),
    "color_factor": lambda x, v: color.saturation(x, v),
    "contrast_factor": lambda x, v: color.contrast(x, v),
    "sharpness_factor": lambda x, v: color.sharpness(x, v),
    "desaturate": lambda x, v: color.saturation(x, (1.0 - v).clamp(0.0, 1.0)),
    "solarize_level": lambda x, v: color.solarize(x, v * (color.max_value(x.dtype) / 255.0)),
    "solarize_add": _solarize_add,
    "gaussian_blur_radius": _pil_blur,
}
GEOMETRIC_KERNELS = ("shear_x", "shear_y", "translate_x_rel", "translate_y_rel", "rotate")  # one warp per mode
WHOLE_PIXEL_KERNELS = ("translate_x", "translate_y")  # torchvision's translations: whole pixels, no resampling
IDENTITY_KERNELS = ("identity",)
# Every kernel a policy op may name: an op naming anything else is refused where its space is built
# (at import), never sent to the untouched group.
KERNELS = (*IDENTITY_KERNELS, *GEOMETRIC_KERNELS, *WHOLE_PIXEL_KERNELS, *COLOR_KERNELS)


@dataclass(frozen=True)
class PolicyOp:
    """One entry of an augmentation space: its name, how a level becomes its argument, its kernel."""

    name: str
    magnitude: Magnitude | None = None
    kernel: str = ""  # what the op does with its argument; defaults to ``name``

    def __post_init__(self):
        if self.does not in KERNELS:
            raise ValueError(f"policy op {self.name!r}: unknown kernel {self.does!r} (known: {', '.join(KERNELS)})")

    @property
    def does(self) -> str:
        return self.kernel or self.name




def _chosen(kinds: list[str], kind: str, op_index: torch.Tensor) -> torch.Tensor:
    """Which samples' op does ``kind``."""
    chosen = torch.zeros_like(op_index, dtype=torch.bool)
    for index in (i for i, k in enumerate(kinds) if k == kind):
        chosen |= op_index == index
    return chosen


def _affine_for(kinds: list[str], op_index: torch.Tensor, value: torch.Tensor,
                height: int, width: int) -> torch.Tensor:
    """Inverse matrices for samples whose op is geometric: torchvision's conventions, PIL's where timm's ops say."""
    def pick(kind: str, v: torch.Tensor) -> torch.Tensor:
        return torch.where(_chosen(kinds, kind, op_index), v, torch.zeros_like(v))

    shear_deg = torch.rad2deg(torch.atan(value))
    shear_x, shear_y = pick("shear_x", shear_deg), pick("shear_y", shear_deg)
    is_shear = (shear_x != 0) | (shear_y != 0)
    zero = torch.zeros_like(value)
    return geometry.inverse_affine_matrix(
        angle=-pick("rotate", value),  # F.rotate and PIL's rotate turn counter-clockwise: the matrix takes -angle
        translate_x=-pick("translate_x_rel", value) * width,  # PIL's offset moves the content back
        translate_y=-pick("translate_y_rel", value) * height,
        scale=torch.ones_like(value),
        shear_x=shear_x,
        shear_y=shear_y,
        center_x=torch.where(is_shear, zero - width / 2.0, zero),  # shears pivot on the top-left corner
        center_y=torch.where(is_shear, zero - height / 2.0, zero),
    )


@dataclass
class Arranged:
    """What each (sample, layer) of a ``LayerParams`` runs, worked out from the draws where they are made (on
    the host, in the device plan), so applying a layer is image work alone."""

    group: torch.Tensor  # (B, layers) int64: 0 untouched; 1 + m warped with mode m; then shifts; then color op i
    matrix: torch.Tensor  # (B, layers, 2, 3) float32 inverse maps, read by warped samples only
    shift: torch.Tensor  # (B, layers, 2) int64 whole-pixel (x, y) shifts, read by shifted samples only


def _modes(params: LayerParams) -> int:
    return 1 if params.interpolation is None else len(RANDOM_INTERPOLATIONS)


def arrange(params: LayerParams, height: int, width: int) -> Arranged:
    """Each (sample, layer)'s group (which kernel runs it), inverse affine map and whole-pixel shift."""
    kinds = [op.does for op in params.space]
    op_index, value = params.op_index, params.value
    modes = _modes(params)
    shifts, first_color = 1 + modes, 2 + modes
    device = op_index.device
    is_geometric = device_constants.on(device, tuple(k in GEOMETRIC_KERNELS for k in kinds) + (False,), torch.bool)
    other_group = device_constants.on(device, tuple(first_color + i if k in COLOR_KERNELS else shifts
                                             if k in WHOLE_PIXEL_KERNELS else 0 for i, k in enumerate(kinds)) + (0,),
                               torch.int64)  # SKIP reads the last
    mode = torch.zeros_like(op_index) if params.interpolation is None else params.interpolation
    group = torch.where(is_geometric[op_index], 1 + mode, other_group[op_index])
    along_x = _chosen(kinds, "translate_x", op_index)
    whole = torch.where(_chosen(kinds, "translate_y", op_index) | along_x, value, torch.zeros_like(value))
    shift = torch.stack((torch.where(along_x, whole, 0.0), torch.where(along_x, 0.0, whole)), dim=-1)
    return Arranged(group, _affine_for(kinds, op_index, value, height, width), shift.to(torch.int64))


def apply_layer(x: torch.Tensor, space: Sequence[PolicyOp], value: torch.Tensor, group: torch.Tensor,
                matrix: torch.Tensor, shift: torch.Tensor, modes: Sequence[str], fill: Sequence[float] | float = 0.0,
                in_place: bool = False) -> torch.Tensor:
    """Apply each sample's op (one layer, one column of ``arrange``): one kernel call per op, one warp per
    interpolation mode; ``in_place`` may write into ``x`` (a batch the caller owns)."""
    kinds = [op.does for op in space]

    def warp(mode_name: str):
        return lambda samples, index: geometry.warp_affine(samples, matrix[index], mode_name, fill)

    def translate(samples: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        moved = shift[index]
        return geometry.translate_whole(samples, moved[:, 0], moved[:, 1], fill)

    def color_kernel(kind: str):
        return lambda samples, index: COLOR_KERNELS[kind](samples, value[index])

    shifts, first_color = 1 + len(modes), 2 + len(modes)
    kernels = {1 + m: warp(name) for m, name in enumerate(modes)}
    kernels[shifts] = translate
    kernels.update({first_color + i: color_kernel(k) for i, k in enumerate(kinds) if k in COLOR_KERNELS})
    return grouping.apply_by_group(x, group, kernels, in_place)


def apply_layers(x: torch.Tensor, params: LayerParams, arranged: Arranged, interpolation: str = "nearest",
                 fill: Sequence[float] | float = 0.0) -> torch.Tensor:
    """Every layer in turn; per-sample interpolations where the params drew them. The input is never
    written: layers after the first that changed anything work in place on the batch it made."""
    modes = (interpolation,) if params.interpolation is None else RANDOM_INTERPOLATIONS
    out = x
    for layer in range(params.op_index.shape[1]):
        out = apply_layer(out, params.space, params.value[:, layer], arranged.group[:, layer],
                          arranged.matrix[:, layer], arranged.shift[:, layer], modes, fill, in_place=out is not x)
    return out


def apply_ops(x: torch.Tensor, space: Sequence[PolicyOp], op_index: torch.Tensor, value: torch.Tensor,
              interpolation: str = "nearest", fill: Sequence[float] | float = 0.0) -> torch.Tensor:
    """One op per sample straight from its draws: ``space[op_index[b]]`` with argument ``value[b]``."""
    params = LayerParams(tuple(space), op_index[:, None], value[:, None])
    return apply_layers(x, params, arrange(params, *x.shape[-2:]), interpolation, fill)
