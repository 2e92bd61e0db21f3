"""RandAugment, TrivialAugmentWide and AutoAugment with the op chosen per sample.

The op sets and magnitude ranges are torchvision's. Unlike torchvision and
kornia, which pick one op for the whole batch, every sample draws its own op,
magnitude and sign; samples are then grouped by op so each kernel runs once
over its group, and all geometric ops of a layer share one warp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from augserve.ops import color, geometry, grouping
from augserve.random import Draw, SampleRng

Magnitude = Callable[[torch.Tensor, int, int], torch.Tensor]


def _linear(top: float) -> Magnitude:
    return lambda level, height, width: level * top


def _translate_fraction(fraction: float, axis: str) -> Magnitude:
    return lambda level, height, width: level * fraction * (width if axis == "x" else height)


def _posterize_bits(span: int) -> Magnitude:
    return lambda level, height, width: torch.round(8 - span * level)


def _solarize_threshold(level: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return 1.0 - level


@dataclass(frozen=True)
class PolicyOp:
    """One entry of an augmentation space: level in [0, 1] -> op value."""

    name: str
    magnitude: Magnitude | None = None
    signed: bool = False


GEOMETRIC_OPS = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")

_COLOR_KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "brightness": lambda x, v: color.brightness(x, 1.0 + v),
    "color": lambda x, v: color.saturation(x, 1.0 + v),
    "contrast": lambda x, v: color.contrast(x, 1.0 + v),
    "sharpness": lambda x, v: color.sharpness(x, 1.0 + v),
    "posterize": lambda x, v: color.posterize(x, v),
    "solarize": lambda x, v: color.solarize(x, v * color.max_value(x.dtype)),
    "autocontrast": lambda x, v: color.autocontrast(x),
    "equalize": lambda x, v: color.equalize(x),
    "invert": lambda x, v: color.invert(x),
    "hue": lambda x, v: color.hue(x, v),
}


def _standard_space(geometric_top: float, translate: Magnitude, rotate_top: float, color_top: float, bits: int):
    return (
        PolicyOp("shear_x", _linear(geometric_top), True),
        PolicyOp("shear_y", _linear(geometric_top), True),
        PolicyOp("translate_x", translate("x"), True),
        PolicyOp("translate_y", translate("y"), True),
        PolicyOp("rotate", _linear(rotate_top), True),
        PolicyOp("brightness", _linear(color_top), True),
        PolicyOp("color", _linear(color_top), True),
        PolicyOp("contrast", _linear(color_top), True),
        PolicyOp("sharpness", _linear(color_top), True),
        PolicyOp("posterize", _posterize_bits(bits)),
        PolicyOp("solarize", _solarize_threshold),
        PolicyOp("autocontrast"),
        PolicyOp("equalize"),
    )


def _relative_translate(axis: str) -> Magnitude:
    return _translate_fraction(150.0 / 331.0, axis)


def _absolute_translate(axis: str) -> Magnitude:
    return _linear(32.0)


RAND_AUGMENT_SPACE = (PolicyOp("identity"), *_standard_space(0.3, _relative_translate, 30.0, 0.9, 4))
TRIVIAL_AUGMENT_WIDE_SPACE = (PolicyOp("identity"), *_standard_space(0.99, _absolute_translate, 135.0, 0.99, 6))
AUTO_AUGMENT_SPACE = (*_standard_space(0.3, _relative_translate, 30.0, 0.9, 4), PolicyOp("invert"))

# (op, probability, magnitude bin of 10) pairs, as in torchvision and the AutoAugment paper.
AUTO_AUGMENT_POLICIES: dict[str, tuple[tuple[tuple[str, float, int | None], ...], ...]] = {
    "imagenet": (
        (("posterize", 0.4, 8), ("rotate", 0.6, 9)),
        (("solarize", 0.6, 5), ("autocontrast", 0.6, None)),
        (("equalize", 0.8, None), ("equalize", 0.6, None)),
        (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
        (("equalize", 0.4, None), ("solarize", 0.2, 4)),
        (("equalize", 0.4, None), ("rotate", 0.8, 8)),
        (("solarize", 0.6, 3), ("equalize", 0.6, None)),
        (("posterize", 0.8, 5), ("equalize", 1.0, None)),
        (("rotate", 0.2, 3), ("solarize", 0.6, 8)),
        (("equalize", 0.6, None), ("posterize", 0.4, 6)),
        (("rotate", 0.8, 8), ("color", 0.4, 0)),
        (("rotate", 0.4, 9), ("equalize", 0.6, None)),
        (("equalize", 0.0, None), ("equalize", 0.8, None)),
        (("invert", 0.6, None), ("equalize", 1.0, None)),
        (("color", 0.6, 4), ("contrast", 1.0, 8)),
        (("rotate", 0.8, 8), ("color", 1.0, 2)),
        (("color", 0.8, 8), ("solarize", 0.8, 7)),
        (("sharpness", 0.4, 7), ("invert", 0.6, None)),
        (("shear_x", 0.6, 5), ("equalize", 1.0, None)),
        (("color", 0.4, 0), ("equalize", 0.6, None)),
        (("equalize", 0.4, None), ("solarize", 0.2, 4)),
        (("solarize", 0.6, 5), ("autocontrast", 0.6, None)),
        (("invert", 0.6, None), ("equalize", 1.0, None)),
        (("color", 0.6, 4), ("contrast", 1.0, 8)),
        (("equalize", 0.8, None), ("equalize", 0.6, None)),
    ),
    "cifar10": (
        (("invert", 0.1, None), ("contrast", 0.2, 6)),
        (("rotate", 0.7, 2), ("translate_x", 0.3, 9)),
        (("sharpness", 0.8, 1), ("sharpness", 0.9, 3)),
        (("shear_y", 0.5, 8), ("translate_y", 0.7, 9)),
        (("autocontrast", 0.5, None), ("equalize", 0.9, None)),
        (("shear_y", 0.2, 7), ("posterize", 0.3, 7)),
        (("color", 0.4, 3), ("brightness", 0.6, 7)),
        (("sharpness", 0.3, 9), ("brightness", 0.7, 9)),
        (("equalize", 0.6, None), ("equalize", 0.5, None)),
        (("contrast", 0.6, 7), ("sharpness", 0.6, 5)),
        (("color", 0.7, 7), ("translate_x", 0.5, 8)),
        (("equalize", 0.3, None), ("autocontrast", 0.4, None)),
        (("translate_y", 0.4, 3), ("sharpness", 0.2, 6)),
        (("brightness", 0.9, 6), ("color", 0.2, 8)),
        (("solarize", 0.5, 2), ("invert", 0.0, None)),
        (("equalize", 0.2, None), ("autocontrast", 0.6, None)),
        (("equalize", 0.2, None), ("equalize", 0.6, None)),
        (("color", 0.9, 9), ("equalize", 0.6, None)),
        (("autocontrast", 0.8, None), ("solarize", 0.2, 8)),
        (("brightness", 0.1, 3), ("color", 0.7, 0)),
        (("solarize", 0.4, 5), ("autocontrast", 0.9, None)),
        (("translate_y", 0.9, 9), ("translate_y", 0.7, 9)),
        (("autocontrast", 0.9, None), ("solarize", 0.8, 3)),
        (("equalize", 0.8, None), ("invert", 0.1, None)),
        (("translate_y", 0.7, 9), ("autocontrast", 0.9, None)),
    ),
    "svhn": (
        (("shear_x", 0.9, 4), ("invert", 0.2, None)),
        (("shear_y", 0.9, 8), ("invert", 0.7, None)),
        (("equalize", 0.6, None), ("solarize", 0.6, 6)),
        (("invert", 0.9, None), ("equalize", 0.6, None)),
        (("equalize", 0.6, None), ("rotate", 0.9, 3)),
        (("shear_x", 0.9, 4), ("autocontrast", 0.8, None)),
        (("shear_y", 0.9, 8), ("invert", 0.4, None)),
        (("shear_y", 0.9, 5), ("solarize", 0.2, 6)),
        (("invert", 0.9, None), ("autocontrast", 0.8, None)),
        (("equalize", 0.6, None), ("rotate", 0.9, 3)),
        (("shear_x", 0.9, 4), ("solarize", 0.3, 3)),
        (("shear_y", 0.8, 8), ("invert", 0.7, None)),
        (("equalize", 0.9, None), ("translate_y", 0.6, 6)),
        (("invert", 0.9, None), ("equalize", 0.6, None)),
        (("contrast", 0.3, 3), ("rotate", 0.8, 4)),
        (("invert", 0.8, None), ("translate_y", 0.0, 2)),
        (("shear_y", 0.7, 6), ("solarize", 0.4, 8)),
        (("invert", 0.6, None), ("rotate", 0.8, 4)),
        (("shear_y", 0.3, 7), ("translate_x", 0.9, 3)),
        (("shear_x", 0.1, 6), ("invert", 0.6, None)),
        (("solarize", 0.7, 2), ("translate_y", 0.6, 7)),
        (("shear_y", 0.8, 4), ("invert", 0.8, None)),
        (("shear_x", 0.7, 9), ("translate_y", 0.8, 3)),
        (("shear_y", 0.8, 5), ("autocontrast", 0.7, None)),
        (("shear_x", 0.7, 2), ("invert", 0.1, None)),
    ),
}

SKIP = -1  # op index of a sample that does nothing in a layer


@dataclass
class LayerParams:
    """Per-sample choices for a sequence of layers: op index into ``space`` and op value."""

    space: tuple[PolicyOp, ...]
    op_index: torch.Tensor  # (B, layers) int64, SKIP where the sample is left alone
    value: torch.Tensor  # (B, layers) float64, in the op's own units (degrees, pixels, factor - 1, bits, ...)


def _values_for(space: Sequence[PolicyOp], op_index: torch.Tensor, level: torch.Tensor,
                negate: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Map per-sample levels to op values for whichever op each sample drew."""
    value = torch.zeros_like(level)
    for index, op in enumerate(space):
        if op.magnitude is None:
            continue
        chosen = op_index == index
        op_value = op.magnitude(level, height, width)
        if op.signed:
            op_value = torch.where(negate, -op_value, op_value)
        value = torch.where(chosen, op_value, value)
    return value


class RandAugmentDraw(Draw):
    OP = 0
    MAGNITUDE = 1  # mstd = inf: the bin drawn uniformly
    MAGNITUDE_NOISE = 2
    NEGATE = 3


class TrivialAugmentDraw(Draw):
    OP = 0
    LEVEL = 1
    NEGATE = 2


class AutoAugmentDraw(Draw):
    SUB_POLICY = 0
    APPLY = 1
    NEGATE = 2


def rand_augment_params(rng: SampleRng, height: int, width: int, num_ops: int, magnitude: float,
                        num_bins: int, magnitude_std: float = 0.0, magnitude_max: float | None = None) -> LayerParams:
    """RandAugment: ``num_ops`` uniform op draws per sample at a fixed magnitude bin.

    ``magnitude_std`` > 0 adds Gaussian noise to the bin per sample and op (timm's
    ``mstd``); ``inf`` draws the bin uniformly from [0, magnitude] instead.
    """
    space = RAND_AUGMENT_SPACE
    op_index = rng.index(RandAugmentDraw.OP, len(space), n=num_ops)
    top = float(num_bins - 1) if magnitude_max is None else float(magnitude_max)
    bins = torch.full(op_index.shape, float(magnitude), dtype=torch.float64, device=rng.device)
    if math.isinf(magnitude_std):
        bins = rng.uniform(RandAugmentDraw.MAGNITUDE, 0.0, magnitude, n=num_ops).to(torch.float64)
    elif magnitude_std > 0:
        bins = bins + rng.normal(RandAugmentDraw.MAGNITUDE_NOISE, 0.0, magnitude_std, n=num_ops).to(torch.float64)
    level = bins.clamp(0.0, top) / (num_bins - 1)
    negate = rng.bernoulli(RandAugmentDraw.NEGATE, 0.5, n=num_ops)
    return LayerParams(space, op_index, _values_for(space, op_index, level, negate, height, width))


def trivial_augment_params(rng: SampleRng, height: int, width: int, num_bins: int) -> LayerParams:
    """TrivialAugmentWide: one op per sample with a uniformly drawn magnitude bin."""
    space = TRIVIAL_AUGMENT_WIDE_SPACE
    op_index = rng.index(TrivialAugmentDraw.OP, len(space), n=1)
    level = rng.index(TrivialAugmentDraw.LEVEL, num_bins, n=1).to(torch.float64) / (num_bins - 1)
    negate = rng.bernoulli(TrivialAugmentDraw.NEGATE, 0.5, n=1)
    return LayerParams(space, op_index, _values_for(space, op_index, level, negate, height, width))


def auto_augment_params(rng: SampleRng, height: int, width: int, policy: str) -> LayerParams:
    """AutoAugment: a sub-policy per sample, each of its two ops applied with its probability."""
    space = AUTO_AUGMENT_SPACE
    names = [op.name for op in space]
    table = AUTO_AUGMENT_POLICIES[policy]
    device = rng.device
    ops = torch.tensor([[names.index(name) for name, _, _ in sub] for sub in table], device=device)
    probs = torch.tensor([[p for _, p, _ in sub] for sub in table], dtype=torch.float32, device=device)
    bins = torch.tensor([[b or 0 for _, _, b in sub] for sub in table], dtype=torch.float64, device=device)

    choice = rng.index(AutoAugmentDraw.SUB_POLICY, len(table))
    apply = rng.uniform(AutoAugmentDraw.APPLY, n=2) <= probs[choice]
    op_index = torch.where(apply, ops[choice], torch.full_like(ops[choice], SKIP))
    level = bins[choice] / 9.0
    negate = rng.bernoulli(AutoAugmentDraw.NEGATE, 0.5, n=2)
    return LayerParams(space, op_index, _values_for(space, op_index, level, negate, height, width))


def _affine_for(names: list[str], op_index: torch.Tensor, value: torch.Tensor,
                height: int, width: int) -> torch.Tensor:
    """Inverse matrices for samples whose op is geometric, as torchvision's policies build them."""
    def pick(name: str, v: torch.Tensor) -> torch.Tensor:
        return torch.where(op_index == names.index(name), v, torch.zeros_like(v))

    is_shear = (op_index == names.index("shear_x")) | (op_index == names.index("shear_y"))
    shear_deg = torch.rad2deg(torch.atan(value))
    zero = torch.zeros_like(value)
    return geometry.inverse_affine_matrix(
        angle=-pick("rotate", value),  # F.rotate turns counter-clockwise: the matrix takes -angle
        translate_x=pick("translate_x", torch.trunc(value)),
        translate_y=pick("translate_y", torch.trunc(value)),
        scale=torch.ones_like(value),
        shear_x=pick("shear_x", shear_deg),
        shear_y=pick("shear_y", shear_deg),
        center_x=torch.where(is_shear, zero - width / 2.0, zero),  # shears pivot on the top-left corner
        center_y=torch.where(is_shear, zero - height / 2.0, zero),
    )


def apply_layer(x: torch.Tensor, space: Sequence[PolicyOp], op_index: torch.Tensor, value: torch.Tensor,
                interpolation: str = "nearest", fill: Sequence[float] | float = 0.0) -> torch.Tensor:
    """Apply each sample's op (one layer): one kernel call per op, one warp for all geometric ops."""
    names = [op.name for op in space]
    height, width = x.shape[-2:]

    def warp(samples: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        matrix = _affine_for(names, op_index[index], value[index], height, width)
        return geometry.warp_affine(samples, matrix, interpolation, fill)

    def color_kernel(name: str):
        return lambda samples, index: _COLOR_KERNELS[name](samples, value[index])

    # group 0: untouched (skip, identity); 1: any geometric op; 2 + i: color op i
    group_of_op = [0 if n == "identity" else 1 if n in GEOMETRIC_OPS else 2 + i for i, n in enumerate(names)]
    lookup = torch.tensor(group_of_op + [0], device=x.device)  # SKIP (-1) reads the trailing 0
    kernels = {1: warp}
    kernels.update({2 + i: color_kernel(n) for i, n in enumerate(names) if n in _COLOR_KERNELS})
    return grouping.apply_by_group(x, lookup[op_index], kernels)


def apply_layers(x: torch.Tensor, params: LayerParams, interpolation: str = "nearest",
                 fill: Sequence[float] | float = 0.0) -> torch.Tensor:
    for layer in range(params.op_index.shape[1]):
        x = apply_layer(x, params.space, params.op_index[:, layer], params.value[:, layer], interpolation, fill)
    return x
