"""Automatic augmentation policies as steps: torchvision's (``rand_augment``, ``trivial_augment``,
``auto_augment``, ``augmix``) and timm's (``timm_rand_augment``, ``timm_auto_augment``, ``timm_augmix``,
which timm strings such as ``rand-m9-mstd0.5-inc1`` compile to). Every sample draws its own ops.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from augserve.ops import augmix, policies, timm_policies
from augserve.ops.policy_kernels import SKIP, LayerParams, apply_layers, arrange
from augserve.random import SampleRng
from augserve.spec import Choice, Flag, Number, NumbersOr, SpecError
from augserve.steps.base import Step, register
from augserve.steps.image import FILL, INTERPOLATION

_TIMM_INTERPOLATION = Choice("random", options=("random", "nearest", "bilinear", "bicubic"),
                             doc="random: bilinear or bicubic per op call, as timm")
_TIMM_FILL = NumbersOr("img_mean", word="img_mean", doc="per channel, or img_mean: timm's ImageNet mean fill")
_TRANSLATE_PCT = Number(0.45, low=0.0, high=1.0, doc="timm's translate_pct: largest shift, fraction of the side")
_MSTD = Number(0.0, low=0.0, allow_inf=True, doc="std of the per-op magnitude noise; inf: uniform in [0, m]")


class _Policy(Step):
    needs_image_channels = True
    reads_unit_range = True
    per_channel = ("fill",)

    def fill_value(self, x: torch.Tensor) -> tuple[float, ...]:
        fill = self.fill_for(x)
        if fill != "img_mean":
            return fill
        mean = timm_policies.IMG_MEAN if x.shape[1] == 3 else (round(sum(timm_policies.IMG_MEAN) / 3),)
        return tuple(v / 255.0 for v in mean) if x.is_floating_point() else tuple(float(v) for v in mean)

    def mode(self) -> str:
        """The interpolation of every warp, where it is not drawn per op call."""
        return "bilinear" if self.args["interpolation"] == "random" else self.args["interpolation"]


class _LayeredPolicy(_Policy):
    """Layers of one op per sample (RandAugment, TrivialAugment, AutoAugment)."""

    @abstractmethod
    def layers(self, rng: SampleRng, height: int, width: int) -> LayerParams:
        """Per-sample op choices and values."""

    def draw(self, rng, batch):
        layers = self.layers(rng, *batch.shape[-2:])
        drawn = {"ops": layers.op_index, "values": layers.value, "space": [op.name for op in layers.space],
                 "_layers": layers, "_arranged": arrange(layers, *batch.shape[-2:])}
        if layers.interpolation is not None:
            drawn["interpolation"] = layers.interpolation
        return drawn

    def apply(self, x, params):
        return apply_layers(x, params["_layers"], params["_arranged"], self.mode(), self.fill_value(x))


@register
class RandAugment(_LayeredPolicy):
    """torchvision's RandAugment (Cubuk et al. 2019): ``n`` ops per sample at magnitude bin ``m``.

    ``m`` counts bins of ``num_magnitude_bins`` (31, so m=9 is 30% of each range). ``mstd`` adds
    per-op Gaussian noise to ``m``; ``mstd: inf`` draws the bin uniformly in [0, m].
    """

    op = "rand_augment"
    fields = {
        "n": Number(2, low=0, high=16, integer=True, neutral=0, doc="ops per sample"),
        "m": Number(9, low=0, high=1000, neutral=0.0, doc="magnitude bin"),
        "num_magnitude_bins": Number(31, low=2, high=1001, integer=True),
        "mstd": Number(0.0, low=0.0, allow_inf=True, doc="std of the per-op magnitude noise, in bins"),
        "mmax": Number(None, low=0, high=1000, doc="upper clip of the noisy magnitude, in bins"),
        "interpolation": INTERPOLATION,
        "fill": FILL,
    }

    def check(self):
        top = self.args["num_magnitude_bins"] - 1
        for name in ("m", "mmax"):
            if self.args[name] is not None and self.args[name] > top:
                raise SpecError(f"{self.where}: field '{name}': expected a number in [0, {top}] "
                                f"(num_magnitude_bins - 1), got {self.args[name]!r}")

    def layers(self, rng, height, width):
        a = self.args
        return policies.rand_augment_params(rng, height, width, a["n"], a["m"], a["num_magnitude_bins"],
                                            a["mstd"], a["mmax"])


@register
class TrivialAugment(_LayeredPolicy):
    """torchvision's TrivialAugmentWide (Müller & Hutter 2021): one op per sample, uniform magnitude."""

    op = "trivial_augment"
    fields = {
        "num_magnitude_bins": Number(31, low=2, high=1001, integer=True),
        "interpolation": INTERPOLATION,
        "fill": FILL,
    }

    def layers(self, rng, height, width):
        return policies.trivial_augment_params(rng, height, width, self.args["num_magnitude_bins"])


@register
class AutoAugment(_LayeredPolicy):
    """torchvision's AutoAugment (Cubuk et al. 2018) learned policies; a sub-policy drawn per sample."""

    op = "auto_augment"
    fields = {
        "policy": Choice("imagenet", options=tuple(policies.AUTO_AUGMENT_POLICIES)),
        "interpolation": INTERPOLATION,
        "fill": FILL,
    }

    def layers(self, rng, height, width):
        return policies.auto_augment_params(rng, height, width, self.args["policy"])


class _TimmRules:
    """What timm's ``AugmentOp`` calls of a timm step share, from its fields."""

    args: dict

    def rules(self) -> timm_policies.OpRules:
        a = self.args
        return timm_policies.OpRules(a["mstd"], a.get("mmax"), a["interpolation"] == "random", a["translate_pct"])


@register
class TimmRandAugment(_TimmRules, _LayeredPolicy):
    """timm's RandAugment (``rand-m9-mstd0.5-inc1``): ``n`` ops per sample, each applied with ``p``,
    timm's op set (``inc``: the increasing-severity variants) and magnitude scale (0..10)."""

    op = "timm_rand_augment"
    fields = {
        "m": Number(10, low=0, high=1000, neutral=0.0, doc="magnitude on timm's 0..10 scale"),
        "n": Number(2, low=0, high=16, integer=True, doc="ops per sample"),
        "p": Number(0.5, low=0.0, high=1.0, neutral=0.0, doc="probability that each chosen op is applied"),
        "mstd": _MSTD,
        "mmax": Number(None, low=0, high=1000, doc="upper clip of the magnitude (timm: none or 0 means 10)"),
        "inc": Flag(False, doc="increasing-severity op variants"),
        "transforms": Choice("default", options=tuple(timm_policies.RAND_CHOICES),
                             doc="timm's op set: default, or weights, 3a, 3aw (timm's t)"),
        "translate_pct": _TRANSLATE_PCT,
        "interpolation": _TIMM_INTERPOLATION,
        "fill": _TIMM_FILL,
    }

    def check(self):
        names, weights = timm_policies.rand_choices(self.args["transforms"], self.args["inc"])
        if weights is not None and self.args["n"] > len(names):
            raise SpecError(f"{self.where}: field 'n': weighted op sets draw without replacement, so at most "
                            f"{len(names)} ops, got {self.args['n']}")

    def layers(self, rng, height, width):
        a = self.args
        names, weights = timm_policies.rand_choices(a["transforms"], a["inc"])
        ops = timm_policies.space(names, a["translate_pct"])
        return timm_policies.rand_augment_params(rng, ops, weights, a["n"], a["m"], a["p"], self.rules(),
                                                 height, width)


@register
class TimmAutoAugment(_TimmRules, _LayeredPolicy):
    """timm's AutoAugment policies (``original``, ``originalr``, ``v0``, ``v0r``, ``3a``), each op with its
    probability and timm's magnitude scale; a sub-policy drawn per sample."""

    op = "timm_auto_augment"
    fields = {
        "policy": Choice("v0", options=tuple(timm_policies.AUTO_AUGMENT_POLICIES)),
        "mstd": _MSTD,
        "translate_pct": _TRANSLATE_PCT,
        "interpolation": _TIMM_INTERPOLATION,
        "fill": _TIMM_FILL,
    }

    def layers(self, rng, height, width):
        return timm_policies.auto_augment_params(rng, self.args["policy"], self.rules(), height, width)


class _AugMix(_Policy):
    """``width`` chains of ``depth`` ops (or 1 to 3 each), mixed per sample; draws: the mixture on
    sub-stream 0, the chains' ops on sub-stream 1."""

    shape_fields: tuple[str, str, str]  # the fields holding chains per sample, ops per chain, concentration

    def check(self):
        depth = self.shape_fields[1]
        if self.args[depth] == 0:
            raise SpecError(f"{self.where}: field '{depth}': expected -1 or 1 to 16, got 0")

    def width_depth_alpha(self) -> tuple[int, int, float]:
        """Chains per sample, ops per chain (-1: 1 to 3), the Dirichlet/Beta concentration."""
        return tuple(self.args[name] for name in self.shape_fields)

    @abstractmethod
    def chain_ops(self, rng: SampleRng, layers: int, height: int, width: int) -> LayerParams:
        """All chains' ops per sample: (B, width * layers)."""

    def draw(self, rng, batch):
        chain_count, depth, alpha = self.width_depth_alpha()
        weights, augmented, depths = augmix.draw_mixture(rng.fork(0), chain_count, depth, alpha)
        per_chain = depth if depth > 0 else augmix.MAX_RANDOM_DEPTH
        ops = self.chain_ops(rng.fork(1), chain_count * per_chain, *batch.shape[-2:])
        past_depth = torch.arange(per_chain, device=depths.device) >= depths[:, :, None]  # (B, width, per_chain)
        op_index = torch.where(past_depth.flatten(1), torch.full_like(ops.op_index, SKIP), ops.op_index)
        chains = augmix.as_rows(LayerParams(ops.space, op_index, ops.value, ops.interpolation), chain_count)
        drawn = {"ops": op_index.view(-1, chain_count, per_chain), "values": ops.value.view(-1, chain_count, per_chain),
                 "space": [op.name for op in ops.space], "chain_weights": weights, "augmented": augmented,
                 "_mixture": augmix.Mixture(chains, arrange(chains, *batch.shape[-2:]), weights, augmented)}
        if ops.interpolation is not None:
            drawn["interpolation"] = ops.interpolation.view(-1, chain_count, per_chain)
        return drawn


@register
class AugMix(_AugMix):
    """torchvision's AugMix (Hendrycks et al. 2020), per sample: ``mixture_width`` chains of
    ``chain_depth`` ops (-1: 1 to 3) at one of the first ``severity`` of 10 bins, Dirichlet(``alpha``)
    chain weights, Beta(``alpha``, ``alpha``) share against the original."""

    op = "augmix"
    shape_fields = ("mixture_width", "chain_depth", "alpha")
    fields = {
        "severity": Number(3, low=1, high=10, integer=True, doc="ops draw one of the first severity of 10 bins"),
        "mixture_width": Number(3, low=1, high=16, integer=True, doc="chains per sample"),
        "chain_depth": Number(-1, low=-1, high=16, integer=True, doc="ops per chain; -1: 1 to 3 at random"),
        "alpha": Number(1.0, low=0.0, high=1e3, exclusive_low=True, doc="Dirichlet and Beta concentration"),
        "all_ops": Flag(True, doc="include brightness, color, contrast and sharpness"),
        "interpolation": Choice("bilinear", options=INTERPOLATION.options),
        "fill": FILL,
    }

    def chain_ops(self, rng, layers, height, width):
        return policies.augmix_chain_params(rng, height, width, layers, self.args["severity"], self.args["all_ops"])

    def apply(self, x, params):
        return augmix.mix_torchvision(x, params["_mixture"], self.mode(), self.fill_value(x))


@register
class TimmAugMix(_TimmRules, _AugMix):
    """timm's AugMix (``augmix-m5-w4-d2``): ``w`` chains of ``d`` timm ops (-1: 1 to 3), magnitude
    uniform in [0, ``m``] unless ``mstd`` says otherwise, weights Dirichlet(``a``), share Beta(``a``, ``a``);
    ``b``: blend each chain in turn (timm's faster approximation)."""

    op = "timm_augmix"
    shape_fields = ("w", "d", "a")
    fields = {
        "m": Number(3, low=0, high=1000, doc="severity on timm's 0..10 scale"),
        "w": Number(3, low=1, high=16, integer=True, doc="chains per sample"),
        "d": Number(-1, low=-1, high=16, integer=True, doc="ops per chain; -1: 1 to 3 at random"),
        "a": Number(1.0, low=0.0, high=1e3, exclusive_low=True, doc="Dirichlet and Beta concentration"),
        "b": Flag(False, doc="blended: blend each chain into the image in turn"),
        "mstd": Number(float("inf"), low=0.0, allow_inf=True, doc="magnitude noise; inf (timm's default): uniform"),
        "translate_pct": Number(0.3, low=0.0, high=1.0, doc="timm's translate_pct (its factory sets 0.3 for AugMix)"),
        "interpolation": _TIMM_INTERPOLATION,
        "fill": _TIMM_FILL,
    }

    def chain_ops(self, rng, layers, height, width):
        return timm_policies.augmix_chain_params(rng, self.args["m"], self.rules(), layers, height, width)

    def apply(self, x, params):
        return augmix.mix_timm(x, params["_mixture"], self.mode(), self.fill_value(x), self.args["b"])
