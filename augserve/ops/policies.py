"""torchvision's RandAugment, TrivialAugmentWide, AutoAugment and AugMix spaces, with the op chosen per sample.

The op sets and magnitude tables are torchvision's: a magnitude bin indexes the same float32
``torch.linspace`` table torchvision builds, so every bin gives torchvision's exact argument (a
solarize threshold computed in float64 instead inverts from one level too high at some bins).
Unlike torchvision and kornia, which pick one op for the whole batch, every sample draws its own
op, magnitude and sign (``policy_kernels`` applies them grouped by op).
"""

from __future__ import annotations

import functools
import math

import torch

from augserve.ops.policy_kernels import SKIP, LayerParams, Magnitude, PolicyOp
from augserve.random import Draw, SampleRng


def _table_value(table: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """table[bins] for whole bins (torchvision's values exactly), linear between entries for noisy bins."""
    table = table.to(device=bins.device, dtype=torch.float64)
    low = bins.floor().clamp(0, table.numel() - 1).to(torch.int64)
    high = (low + 1).clamp(max=table.numel() - 1)
    between = table[low] + (bins - low) * (table[high] - table[low])
    return torch.where(bins == low, table[low], between)


def _signed(value: torch.Tensor, negate: torch.Tensor) -> torch.Tensor:
    return torch.where(negate, -value, value)


def _linspace(top: float | str, num_bins: int, start: float = 0.0, signed: bool = True) -> Magnitude:
    """torchvision's ``torch.linspace(start, top, num_bins)[bin]``; a named ``top`` scales with the image."""
    def magnitude(bins, negate, height, width):
        end = top if isinstance(top, float) else _SIZED_TOPS[top](height, width)
        value = _table_value(torch.linspace(start, end, num_bins), bins)
        return _signed(value, negate) if signed else value
    return magnitude


def _translate(top: float | str, num_bins: int) -> Magnitude:
    """Pixels, truncated as torchvision's ``int(magnitude)`` (truncation commutes with the sign)."""
    pixels = _linspace(top, num_bins, signed=False)
    return lambda bins, negate, height, width: _signed(torch.trunc(pixels(bins, negate, height, width)), negate)


def _posterize_bits(base: int, span: int, num_bins: int) -> Magnitude:
    """``base - (arange(num_bins) / ((num_bins - 1) / span)).round()``, computed in float32 as torchvision does."""
    step = torch.tensor((num_bins - 1) / span, dtype=torch.float32)

    def bits(bins, negate, height, width):
        return base - torch.round(bins.to(torch.float32) / step.to(bins.device)).double()
    return bits


_SIZED_TOPS = {
    "width*150/331": lambda height, width: 150.0 / 331.0 * width,
    "height*150/331": lambda height, width: 150.0 / 331.0 * height,
    "width/3": lambda height, width: width / 3.0,
    "height/3": lambda height, width: height / 3.0,
}


def _standard_ops(num_bins: int, geometric_top: float, translate: tuple[str, str] | float, rotate_top: float,
                  color_top: float, posterize: Magnitude) -> tuple[PolicyOp, ...]:
    shift_x, shift_y = (translate, translate) if isinstance(translate, float) else translate
    return (
        PolicyOp("shear_x", _linspace(geometric_top, num_bins)),
        PolicyOp("shear_y", _linspace(geometric_top, num_bins)),
        PolicyOp("translate_x", _translate(shift_x, num_bins)),
        PolicyOp("translate_y", _translate(shift_y, num_bins)),
        PolicyOp("rotate", _linspace(rotate_top, num_bins)),
        PolicyOp("brightness", _linspace(color_top, num_bins)),
        PolicyOp("color", _linspace(color_top, num_bins)),
        PolicyOp("contrast", _linspace(color_top, num_bins)),
        PolicyOp("sharpness", _linspace(color_top, num_bins)),
        PolicyOp("posterize", posterize),
        PolicyOp("solarize", _linspace(0.0, num_bins, start=1.0, signed=False)),
        PolicyOp("autocontrast"),
        PolicyOp("equalize"),
    )


@functools.lru_cache(maxsize=64)
def rand_augment_space(num_bins: int) -> tuple[PolicyOp, ...]:
    return (PolicyOp("identity"), *_standard_ops(num_bins, 0.3, ("width*150/331", "height*150/331"), 30.0, 0.9,
                                                  _posterize_bits(8, 4, num_bins)))


@functools.lru_cache(maxsize=64)
def trivial_augment_space(num_bins: int) -> tuple[PolicyOp, ...]:
    return (PolicyOp("identity"), *_standard_ops(num_bins, 0.99, 32.0, 135.0, 0.99, _posterize_bits(8, 6, num_bins)))


AUTO_AUGMENT_BINS = 10
AUTO_AUGMENT_SPACE = (*_standard_ops(AUTO_AUGMENT_BINS, 0.3, ("width*150/331", "height*150/331"), 30.0, 0.9,
                                     _posterize_bits(8, 4, AUTO_AUGMENT_BINS)), PolicyOp("invert"))
AUGMIX_BINS = 10  # torchvision's _PARAMETER_MAX: severity s draws one of the first s of 10 bins
_AUGMIX_ALL = _standard_ops(AUGMIX_BINS, 0.3, ("width/3", "height/3"), 30.0, 0.9, _posterize_bits(4, 4, AUGMIX_BINS))
_ENHANCE = ("brightness", "color", "contrast", "sharpness")
# torchvision's dict order: its partial space (all_ops=False) is the first nine, without the enhance ops
AUGMIX_SPACE = (*(op for op in _AUGMIX_ALL if op.name not in _ENHANCE),
                *(op for op in _AUGMIX_ALL if op.name in _ENHANCE))
AUGMIX_PARTIAL_OPS = len(AUGMIX_SPACE) - len(_ENHANCE)

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

def _values_for(space: tuple[PolicyOp, ...], op_index: torch.Tensor, level: torch.Tensor,
                negate: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Each sample's argument for whichever op it drew (levels in the space's own scale)."""
    value = torch.zeros_like(level)
    for index, op in enumerate(space):
        if op.magnitude is not None:
            value = torch.where(op_index == index, op.magnitude(level, negate, height, width), value)
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


def noisy_magnitude(rng: SampleRng, uniform: Draw, noise: Draw, magnitude: float | torch.Tensor, std: float,
                    n: int) -> torch.Tensor:
    """(B, n) float64 magnitudes: as given, with Gaussian noise (timm's ``mstd``), or uniform in [0, m] (inf)."""
    magnitude = torch.as_tensor(magnitude, dtype=torch.float64, device=rng.device).expand(rng.batch_size, n)
    if math.isinf(std):
        return rng.uniform(uniform, n=n).to(torch.float64) * magnitude
    if std > 0:
        return magnitude + rng.normal(noise, 0.0, std, n=n).to(torch.float64)
    return magnitude.clone()


def rand_augment_params(rng: SampleRng, height: int, width: int, num_ops: int, magnitude: float,
                        num_bins: int, magnitude_std: float = 0.0, magnitude_max: float | None = None) -> LayerParams:
    """RandAugment: ``num_ops`` uniform op draws per sample at a fixed magnitude bin.

    ``magnitude_std`` > 0 adds Gaussian noise to the bin per sample and op (timm's
    ``mstd``); ``inf`` draws the bin uniformly from [0, magnitude] instead.
    """
    space = rand_augment_space(num_bins)
    op_index = rng.index(RandAugmentDraw.OP, len(space), n=num_ops)
    top = float(num_bins - 1) if magnitude_max is None else float(magnitude_max)
    bins = noisy_magnitude(rng, RandAugmentDraw.MAGNITUDE, RandAugmentDraw.MAGNITUDE_NOISE, magnitude,
                           magnitude_std, num_ops).clamp(0.0, top)
    negate = rng.bernoulli(RandAugmentDraw.NEGATE, 0.5, n=num_ops)
    return LayerParams(space, op_index, _values_for(space, op_index, bins, negate, height, width))


def trivial_augment_params(rng: SampleRng, height: int, width: int, num_bins: int) -> LayerParams:
    """TrivialAugmentWide: one op per sample with a uniformly drawn magnitude bin."""
    space = trivial_augment_space(num_bins)
    op_index = rng.index(TrivialAugmentDraw.OP, len(space), n=1)
    bins = rng.index(TrivialAugmentDraw.LEVEL, num_bins, n=1).to(torch.float64)
    negate = rng.bernoulli(TrivialAugmentDraw.NEGATE, 0.5, n=1)
    return LayerParams(space, op_index, _values_for(space, op_index, bins, negate, height, width))


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
    negate = rng.bernoulli(AutoAugmentDraw.NEGATE, 0.5, n=2)
    return LayerParams(space, op_index, _values_for(space, op_index, bins[choice], negate, height, width))


class AugMixOpDraw(Draw):
    OP = 0
    BIN = 1
    NEGATE = 2


def augmix_chain_params(rng: SampleRng, height: int, width: int, layers: int, severity: int,
                        all_ops: bool) -> LayerParams:
    """``layers`` ops per sample from torchvision's AugMix space: a uniform op, one of the first
    ``severity`` of its 10 magnitude bins, a random sign for signed ops."""
    space = AUGMIX_SPACE if all_ops else AUGMIX_SPACE[:AUGMIX_PARTIAL_OPS]
    op_index = rng.index(AugMixOpDraw.OP, len(space), n=layers)
    bins = rng.index(AugMixOpDraw.BIN, severity, n=layers).to(torch.float64)
    negate = rng.bernoulli(AugMixOpDraw.NEGATE, 0.5, n=layers)
    return LayerParams(space, op_index, _values_for(space, op_index, bins, negate, height, width))
