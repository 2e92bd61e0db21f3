"""timm's RandAugment, AutoAugment and AugMix op sets, drawn per sample (``timm.data.auto_augment``).

Every op is timm's ``AugmentOp``: applied with its probability, magnitude on timm's 0..10 scale
(fixed, Gaussian noise with ``mstd``, uniform in [0, m] with ``mstd=inf``), clipped to [0, mmax or 10],
mapped to the PIL argument by timm's ``level_to_arg`` (same float64 arithmetic, same truncations),
with a random sign where timm flips one and, for geometric ops, bilinear or bicubic at random when
the interpolation is "random". Values are timm's arguments: enhance factors, thresholds in 0..256
levels, translations as fractions of the image side (PIL's direction), degrees, bits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from augserve.ops.policies import noisy_magnitude
from augserve.ops.policy_kernels import RANDOM_INTERPOLATIONS, SKIP, LayerParams, Magnitude, PolicyOp
from augserve.random import Draw, SampleRng

LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitudes are on a 0..10 scale
IMG_MEAN = (124, 116, 104)  # timm's img_mean fill for the ImageNet mean, as its transform factory sets it


def _level(m: torch.Tensor) -> torch.Tensor:
    return m / LEVEL_DENOM


def _signed(scale: float) -> Magnitude:
    """(m / 10) * scale with timm's random sign (rotate, shear)."""
    return lambda m, negate, height, width: torch.where(negate, -(_level(m) * scale), _level(m) * scale)


def _enhance(m, negate, height, width):
    return _level(m) * 1.8 + 0.1


def _enhance_increasing(m, negate, height, width):
    step = _level(m) * 0.9
    return torch.clamp(1.0 + torch.where(negate, -step, step), min=0.1)


def _posterize(m, negate, height, width):
    return torch.trunc(_level(m) * 4)


def _posterize_increasing(m, negate, height, width):
    return 4 - _posterize(m, negate, height, width)


def _posterize_original(m, negate, height, width):
    return _posterize(m, negate, height, width) + 4


def _solarize(m, negate, height, width):
    return torch.clamp(torch.trunc(_level(m) * 256), max=256)


def _solarize_increasing(m, negate, height, width):
    return 256 - _solarize(m, negate, height, width)


def _solarize_add(m, negate, height, width):
    return torch.clamp(torch.trunc(_level(m) * 110), max=128)


def _minmax(low: float, high: float) -> Magnitude:
    return lambda m, negate, height, width: torch.clamp(low + (high - low) * _level(m), low, high)


def _translate_rel(fraction: float) -> Magnitude:
    return _signed(fraction)


def timm_ops(translate_pct: float) -> dict[str, PolicyOp]:
    """timm's ops by name (``NAME_TO_OP`` x ``LEVEL_TO_ARG``); ``translate_pct`` is its hparam (0.45; AugMix 0.3)."""
    ops = [
        PolicyOp("AutoContrast", None, "autocontrast"),
        PolicyOp("Equalize", None, "equalize"),
        PolicyOp("Invert", None, "invert"),
        PolicyOp("Rotate", _signed(30.0), "rotate"),
        PolicyOp("Posterize", _posterize, "posterize"),
        PolicyOp("PosterizeIncreasing", _posterize_increasing, "posterize"),
        PolicyOp("PosterizeOriginal", _posterize_original, "posterize"),
        PolicyOp("Solarize", _solarize, "solarize_level"),
        PolicyOp("SolarizeIncreasing", _solarize_increasing, "solarize_level"),
        PolicyOp("SolarizeAdd", _solarize_add, "solarize_add"),
        *(PolicyOp(name, _enhance, f"{kernel}_factor") for name, kernel in _ENHANCE_OPS),
        *(PolicyOp(f"{name}Increasing", _enhance_increasing, f"{kernel}_factor") for name, kernel in _ENHANCE_OPS),
        PolicyOp("ShearX", _signed(0.3), "shear_x"),
        PolicyOp("ShearY", _signed(0.3), "shear_y"),
        PolicyOp("TranslateXRel", _translate_rel(translate_pct), "translate_x_rel"),
        PolicyOp("TranslateYRel", _translate_rel(translate_pct), "translate_y_rel"),
        PolicyOp("Desaturate", _minmax(0.5, 1.0), "desaturate"),
        PolicyOp("GaussianBlur", _minmax(0.1, 2.0), "gaussian_blur_radius"),
        PolicyOp("GaussianBlurRand", _minmax(0.0, 1.0), "gaussian_blur_radius"),  # radius drawn in (0.1, 2 * level)
    ]
    return {op.name: op for op in ops}


_ENHANCE_OPS = (("Color", "color"), ("Contrast", "contrast"), ("Brightness", "brightness"), ("Sharpness", "sharpness"))

# timm's op sets, in timm's order (an op's index is its number in the space)
RAND_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
                   "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
RAND_INCREASING_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                              "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                              "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
                              "TranslateYRel")
RAND_3A = ("SolarizeIncreasing", "Desaturate", "GaussianBlur")
RAND_WEIGHTED_0 = {"Rotate": 3, "ShearX": 2, "ShearY": 2, "TranslateXRel": 1, "TranslateYRel": 1,
                   "ColorIncreasing": .25, "SharpnessIncreasing": 0.25, "AutoContrast": 0.25,
                   "SolarizeIncreasing": .05, "SolarizeAdd": .05, "ContrastIncreasing": .05,
                   "BrightnessIncreasing": .05, "Equalize": .05, "PosterizeIncreasing": 0.05, "Invert": 0.05}
RAND_WEIGHTED_3A = {"SolarizeIncreasing": 6, "Desaturate": 6, "GaussianBlur": 6, "Rotate": 3, "ShearX": 2,
                    "ShearY": 2, "PosterizeIncreasing": 1, "AutoContrast": 1, "ColorIncreasing": 1,
                    "SharpnessIncreasing": 1, "ContrastIncreasing": 1, "BrightnessIncreasing": 1, "Equalize": 1,
                    "Invert": 1}
RAND_CHOICES = {"default": None, "weights": RAND_WEIGHTED_0, "3aw": RAND_WEIGHTED_3A, "3a": RAND_3A}
AUGMIX_TRANSFORMS = ("AutoContrast", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                     "SharpnessIncreasing", "Equalize", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                     "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")

_V0 = ((("Equalize", 0.8, 1), ("ShearY", 0.8, 4)), (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
       (("Color", 0.4, 1), ("Rotate", 0.6, 8)), (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
       (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)), (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
       (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)), (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
       (("Color", 0.6, 1), ("Equalize", 1.0, 2)), (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
       (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)), (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
       (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)), (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
       (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)), (("Rotate", 1.0, 7), ("TranslateYRel", 0.8, 9)),
       (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)), (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
       (("Color", 1.0, 0), ("Rotate", 0.6, 2)), (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
       (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)), (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
       (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)), (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
       (("Color", 0.8, 6), ("Rotate", 0.4, 5)))
_ORIGINAL = ((("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
             (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
             (("PosterizeOriginal", 0.6, 7), ("PosterizeOriginal", 0.6, 6)),
             (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)), (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
             (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)), (("PosterizeOriginal", 0.8, 5), ("Equalize", 1.0, 2)),
             (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, 8), ("PosterizeOriginal", 0.4, 6)),
             (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
             (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)), (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
             (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
             (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
             (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)), (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
             (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
             (("Invert", 0.6, 4), ("Equalize", 1.0, 8)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
             (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)))


def _research_posterize(policy):
    """timm's ``...r`` policies: the same, with Posterize counting discarded bits (PosterizeIncreasing)."""
    return tuple(tuple(("PosterizeIncreasing" if name.startswith("Posterize") else name, p, m) for name, p, m in sub)
                 for sub in policy)


AUTO_AUGMENT_POLICIES = {
    "original": _ORIGINAL, "originalr": _research_posterize(_ORIGINAL), "v0": _V0, "v0r": _research_posterize(_V0),
    "3a": ((("Solarize", 1.0, 5),), (("Desaturate", 1.0, 10),), (("GaussianBlurRand", 1.0, 10),)),
}


@functools.lru_cache(maxsize=64)
def space(names: tuple[str, ...], translate_pct: float) -> tuple[PolicyOp, ...]:
    ops = timm_ops(translate_pct)
    return tuple(ops[name] for name in names)


@dataclass(frozen=True)
class OpRules:
    """What every timm ``AugmentOp`` of a policy shares: magnitude noise and clip, interpolation, translation."""

    magnitude_std: float = 0.0
    magnitude_max: float | None = None  # timm: None or 0 means 10
    random_interpolation: bool = True
    translate_pct: float = 0.45

    @property
    def upper(self) -> float:
        return float(self.magnitude_max or LEVEL_DENOM)


class TimmOpDraw(Draw):
    """The draws of timm ``AugmentOp`` calls, one value per layer (op call) of a sample."""

    OP = 0
    APPLY = 1
    MAGNITUDE = 2  # mstd = inf
    MAGNITUDE_NOISE = 3
    NEGATE = 4
    INTERPOLATION = 5
    BLUR_RADIUS = 6
    SUB_POLICY = 7


def op_calls(rng: SampleRng, ops: tuple[PolicyOp, ...], op_index: torch.Tensor, magnitude: torch.Tensor,
             prob: torch.Tensor | float, rules: OpRules, height: int, width: int) -> LayerParams:
    """timm's ``AugmentOp.__call__`` for every (sample, layer): apply with ``prob``, noisy clipped magnitude,
    ``level_to_arg`` with its random sign, a random interpolation per call; (B, layers) in and out."""
    layers = op_index.shape[1]
    applied = rng.uniform(TimmOpDraw.APPLY, n=layers) <= prob
    m = noisy_magnitude(rng, TimmOpDraw.MAGNITUDE, TimmOpDraw.MAGNITUDE_NOISE, magnitude, rules.magnitude_std,
                        layers).clamp(0.0, rules.upper)
    negate = rng.bernoulli(TimmOpDraw.NEGATE, 0.5, n=layers)
    value = torch.zeros_like(m)
    for index, op in enumerate(ops):
        if op.magnitude is not None:
            value = torch.where(op_index == index, op.magnitude(m, negate, height, width), value)
    blur_rand = [i for i, op in enumerate(ops) if op.name == "GaussianBlurRand"]
    if blur_rand:  # radius uniform in (0.1, 2 * level), as random.uniform draws it
        radius = 0.1 + (2.0 * value - 0.1) * rng.uniform(TimmOpDraw.BLUR_RADIUS, n=layers).to(torch.float64)
        value = torch.where(op_index == blur_rand[0], radius, value)
    interpolation = rng.index(TimmOpDraw.INTERPOLATION, len(RANDOM_INTERPOLATIONS), n=layers) \
        if rules.random_interpolation else None
    return LayerParams(ops, torch.where(applied, op_index, torch.full_like(op_index, SKIP)), value, interpolation)


def rand_choices(transforms: str, increasing: bool) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """timm's ``rand_augment_choices``: the op names and, for weighted sets, their weights."""
    chosen = RAND_CHOICES[transforms]
    if chosen is None:
        return (RAND_INCREASING_TRANSFORMS if increasing else RAND_TRANSFORMS), None
    if isinstance(chosen, dict):
        return tuple(chosen), tuple(float(w) for w in chosen.values())
    return chosen, None


def rand_augment_params(rng: SampleRng, ops: tuple[PolicyOp, ...], weights: tuple[float, ...] | None, num_ops: int,
                        magnitude: float, prob: float, rules: OpRules, height: int, width: int) -> LayerParams:
    """timm's ``RandAugment``: ``num_ops`` ops per sample, uniform with replacement, or by weight without
    replacement (numpy's sequential draw, as Efraimidis-Spirakis keys log(u) / w give it), each a timm op call."""
    if weights is None:
        op_index = rng.index(TimmOpDraw.OP, len(ops), n=num_ops)
    else:
        keys = torch.log(1.0 - rng.uniform(TimmOpDraw.OP, n=len(ops)).to(torch.float64))
        keys = keys / torch.tensor(weights, dtype=torch.float64, device=rng.device)
        op_index = keys.topk(num_ops, dim=1).indices
    return op_calls(rng, ops, op_index, torch.tensor(float(magnitude), dtype=torch.float64), prob, rules,
                    height, width)


def auto_augment_params(rng: SampleRng, policy: str, rules: OpRules, height: int, width: int) -> LayerParams:
    """timm's ``AutoAugment``: a sub-policy per sample, each of its ops a timm op call with its probability."""
    table = AUTO_AUGMENT_POLICIES[policy]
    names = tuple(dict.fromkeys(name for sub in table for name, _, _ in sub))
    device = rng.device
    ops = torch.tensor([[names.index(name) for name, _, _ in sub] for sub in table], device=device)
    probs = torch.tensor([[p for _, p, _ in sub] for sub in table], dtype=torch.float32, device=device)
    magnitudes = torch.tensor([[m for _, _, m in sub] for sub in table], dtype=torch.float64, device=device)
    choice = rng.index(TimmOpDraw.SUB_POLICY, len(table))
    return op_calls(rng, space(names, rules.translate_pct), ops[choice], magnitudes[choice], probs[choice], rules,
                    height, width)


def augmix_chain_params(rng: SampleRng, magnitude: float, rules: OpRules, layers: int,
                        height: int, width: int) -> LayerParams:
    """``layers`` op calls per sample from timm's AugMix op set (uniform with replacement, always applied)."""
    ops = space(AUGMIX_TRANSFORMS, rules.translate_pct)
    op_index = rng.index(TimmOpDraw.OP, len(ops), n=layers)
    return op_calls(rng, ops, op_index, torch.tensor(float(magnitude), dtype=torch.float64), 1.0, rules,
                    height, width)
