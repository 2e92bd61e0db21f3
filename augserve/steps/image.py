"""Image steps: crops, flips, affine warps, color, erasing, normalize (policies: ``steps.policies``).

Values such as ``fill`` and ``value`` are in the units of the tensor at that
step: 0..255 for uint8, the float values otherwise (e.g. after ``normalize``).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable

import torch
from torchvision.transforms.v2 import functional as TF

from augserve import device_constants
from augserve.normalize import normalize
from augserve.ops import blur, color, erasing, exact_resize, geometry, grouping, plan, policy_kernels
from augserve.ops.boxes import sample_boxes
from augserve.ops.policy_kernels import PolicyOp
from augserve.random import Draw, SampleRng
from augserve.spec import Choice, Interval, Number, Numbers, NumbersOr, Size, SpecError
from augserve.steps.base import GATE
from augserve.steps.base import PROBABILITY as _P
from augserve.steps.base import Batch, Params, Step, register, repeat_channel

ATTEMPTS = 10  # box draws per sample for crops and erasing, as torchvision
INTERPOLATION = Choice("nearest", options=geometry.INTERPOLATIONS)
FILL = Numbers(0.0, doc="value for pixels warped in from outside, per channel")
_FACTOR = "factor range; v means [max(0, 1 - v), 1 + v]"


def _box_uniforms(rng: SampleRng, draws: type[Draw]) -> tuple[torch.Tensor, ...]:
    """Uniforms for ATTEMPTS boxes per sample: area, aspect ratio, top, left (``ops.boxes.sample_boxes``)."""
    return tuple(rng.uniform(d, n=ATTEMPTS) for d in (draws.AREA, draws.RATIO, draws.TOP, draws.LEFT))


def _resampling(boxes: Callable[[], torch.Tensor], batch: Batch, size: tuple[int, int]) -> Params:
    """Branch-free, the crops' filters are worked out with the boxes (on the host, in the device plan): the
    device is left the image work alone. Elsewhere nothing: the crop is resampled as it runs."""
    if not plan.is_branch_free() or batch.sizes is not None:
        return {}
    return {"_taps": list(exact_resize.crop_taps(boxes(), *batch.shape[-2:], tuple(size)))}


class _RandomApply(Step):
    """A fixed color op applied to each sample with probability ``p``."""

    class Draw(Draw):
        APPLIED = 0

    needs_image_channels = True
    reads_unit_range = True
    fields = {"p": _P}

    @abstractmethod
    def kernel(self, x: torch.Tensor) -> torch.Tensor:
        """The op on the selected samples."""

    def draw(self, rng, batch):
        return {"applied": rng.bernoulli(self.Draw.APPLIED, self.args["p"])}

    def apply(self, x, params):
        return grouping.apply_where(x, params["applied"], lambda sub, _: self.kernel(sub))


# --- crops, resizing, flips -------------------------------------------------------------


@register
class RandomResizedCrop(Step):
    """torchvision's RandomResizedCrop: a box of random area and aspect ratio per sample
    (10 attempts, then the centre), resized as torchvision does (antialiased bilinear)."""

    class Draw(Draw):
        AREA = 0
        RATIO = 1
        TOP = 2
        LEFT = 3

    op = "random_resized_crop"
    fixes_size = True
    fields = {
        "size": Size(doc="output [height, width]"),
        "scale": Interval((0.08, 1.0), low=0.0, high=1.0, neutral=1.0, doc="crop area as a fraction of the image"),
        "ratio": Interval((3 / 4, 4 / 3), low=1e-3, high=1e3, neutral=1.0, geometric=True, doc="crop aspect ratio range (w/h)"),
    }

    def check(self):
        if self.args["scale"][1] <= 0:
            raise SpecError(f"{self.where}: field 'scale': expected max > 0, got {list(self.args['scale'])}")

    def output_shape(self, shape):
        return (*shape[:-2], *self.args["size"])

    def draw(self, rng, batch):
        height, width = batch.shape[-2:] if batch.sizes is None else batch.sizes.unbind(1)
        uniforms = _box_uniforms(rng, self.Draw)
        box = geometry.sample_resized_crop_boxes(uniforms, height, width, self.args["scale"], self.args["ratio"])
        return {"box": box, **_resampling(lambda: box, batch, self.args["size"])}

    def apply(self, x, params):
        if "_taps" in params:
            return exact_resize.resample(x, *params["_taps"])
        return geometry.resized_crop(x, params["box"], self.args["size"])


@register
class Resize(Step):
    """Resize (antialiased): one integer resizes the shorter side, ``[h, w]`` sets both."""

    op = "resize"
    draws_nothing = True
    fields = {"size": Size(doc="output [height, width]; one integer resizes the shorter side")}

    def __init__(self, where: str, /, **given: Any):
        self.shorter_side = isinstance(given.get("size"), (int, float)) and not isinstance(given.get("size"), bool)
        self.fixes_size = not self.shorter_side
        super().__init__(where, **given)

    def to_dict(self):
        size = self.args["size"]
        return {"op": self.op, "size": size[0] if self.shorter_side else list(size)}

    def output_shape(self, shape):
        if not self.shorter_side:
            return (*shape[:-2], *self.args["size"])
        height, width = shape[-2:]
        short, long = sorted((height, width))
        side, other = self.args["size"][0], int(self.args["size"][0] * long / short)  # as torchvision rounds
        return (*shape[:-2], *((side, other) if height <= width else (other, side)))

    def draw(self, rng, batch):
        return _resampling(lambda: torch.tensor([[0, 0, *batch.shape[-2:]]], device=batch.device),  # one for all
                           batch, self.output_shape(batch.shape)[-2:])

    def apply(self, x, params):
        if "_taps" in params:
            return exact_resize.resample(x, *params["_taps"])
        return geometry.resize(x, self.output_shape(tuple(x.shape))[-2:])


@register
class CenterCrop(Step):
    """The centre ``size`` of every image, padded with 0 where the image is smaller (as torchvision)."""

    op = "center_crop"
    draws_nothing = True
    fixes_size = True
    fields = {"size": Size()}

    def output_shape(self, shape):
        return (*shape[:-2], *self.args["size"])

    def apply(self, x, params):
        return TF.center_crop(x, list(self.args["size"]))


def _towards_centre(offset: torch.Tensor, span: int, strength: float) -> torch.Tensor:
    """Crop offsets in [0, span] moved towards span / 2 by ``strength``, rounded and kept in range."""
    return (span / 2 + strength * (offset - span / 2)).round().clamp(0, span).to(offset.dtype)


@register
class RandomCrop(Step):
    """A ``size`` crop at a random position per sample, after padding every side by ``padding``."""

    class Draw(Draw):
        TOP = 0
        LEFT = 1

    op = "random_crop"
    also_scales = "position → centre"
    per_channel = ("fill",)
    fields = {
        "size": Size(),
        "padding": Number(0, low=0, high=1024, integer=True, neutral=0, doc="border added on every side before cropping"),
        "fill": FILL,
    }

    def output_shape(self, shape):
        pad = self.args["padding"]
        height, width = shape[-2] + 2 * pad, shape[-1] + 2 * pad
        out_h, out_w = self.args["size"]
        if out_h > height or out_w > width:
            raise ValueError(f"{self.where}: field 'size' = [{out_h}, {out_w}] is larger than the "
                             f"padded image ({height}x{width})")
        return (*shape[:-2], out_h, out_w)

    def draw(self, rng, batch):
        pad = self.args["padding"]
        height, width = batch.shape[-2] + 2 * pad, batch.shape[-1] + 2 * pad
        out_h, out_w = self.args["size"]
        top, left = rng.index(self.Draw.TOP, height - out_h + 1), rng.index(self.Draw.LEFT, width - out_w + 1)
        if self.strength != 1.0:  # the position's spread around the centre scales too: 0 is a centre crop
            top, left = _towards_centre(top, height - out_h, self.strength), _towards_centre(left, width - out_w,
                                                                                               self.strength)
        return {"top": top, "left": left}

    def apply(self, x, params):
        pad = self.args["padding"]
        if pad:
            fill = self.fill_for(x)
            x = TF.pad(x, [pad], fill=list(fill) if len(fill) > 1 else fill[0])
        return geometry.crop(x, params["top"], params["left"], self.args["size"])


@register
class HorizontalFlip(Step):
    """Mirror left-right, each sample with probability ``p``."""

    class Draw(Draw):
        APPLIED = 0

    op = "hflip"
    fields = {"p": _P}
    axis = -1
    also_scales = "above 1: `p` up to 0.5"

    def draw(self, rng, batch):
        return {"applied": rng.bernoulli(self.Draw.APPLIED, self.args["p"])}

    def apply(self, x, params):
        return geometry.flip_where(x, params["applied"], dim=self.axis)

    def at_strength(self, strength: float) -> "HorizontalFlip":
        """``p`` scaled, but raised no higher than 0.5 (or the ``p`` given, when higher): a flip varies most at
        0.5; past it, it does not augment more, it mirrors most samples (``p`` 0.5 at strength 2 would train
        on mirror images alone)."""
        step = super().at_strength(strength)
        ceiling = max(self.args["p"], 0.5)
        if step.args["p"] <= ceiling:
            return step
        capped = type(self)(self.where, p=ceiling)
        capped.strength = strength
        return capped


@register
class VerticalFlip(HorizontalFlip):
    """Mirror top-bottom, each sample with probability ``p``."""

    op = "vflip"
    axis = -2


@register
class RandomAffine(Step):
    """torchvision's RandomAffine, every sample with its own angle, shift, scale and shear."""

    class Draw(Draw):
        ANGLE = 0
        SHIFT_X = 1
        SHIFT_Y = 2
        SCALE = 3
        SHEAR_X = 4
        SHEAR_Y = 5

    op = "random_affine"
    per_channel = ("fill",)
    fields = {
        "degrees": Interval((0.0, 0.0), low=-360, high=360, symmetric="plus_minus", neutral=0.0,
                            doc="rotation range; v means [-v, v]"),
        "translate": Numbers((0.0, 0.0), low=0.0, high=1.0, neutral=0.0, doc="max shift as a fraction of [width, height]"),
        "scale": Interval((1.0, 1.0), low=1e-3, high=100.0, neutral=1.0, geometric=True, doc="zoom range"),
        "shear": Interval((0.0, 0.0), low=-89, high=89, symmetric="plus_minus", neutral=0.0, doc="x shear in degrees"),
        "shear_y": Interval((0.0, 0.0), low=-89, high=89, symmetric="plus_minus", neutral=0.0, doc="y shear in degrees"),
        "interpolation": INTERPOLATION,
        "fill": FILL,
    }

    def check(self):
        if len(self.args["translate"]) != 2:
            raise SpecError(f"{self.where}: field 'translate': expected [fx, fy], got {list(self.args['translate'])}")

    def draw(self, rng, batch):
        height, width = batch.shape[-2:]
        a = self.args
        angle = rng.uniform(self.Draw.ANGLE, *a["degrees"])
        tx = torch.round(rng.uniform(self.Draw.SHIFT_X, -1.0, 1.0) * (a["translate"][0] * width))
        ty = torch.round(rng.uniform(self.Draw.SHIFT_Y, -1.0, 1.0) * (a["translate"][1] * height))
        scale = rng.uniform(self.Draw.SCALE, *a["scale"])
        shear_x = rng.uniform(self.Draw.SHEAR_X, *a["shear"])
        shear_y = rng.uniform(self.Draw.SHEAR_Y, *a["shear_y"])
        return {"angle": angle, "translate": torch.stack((tx, ty), 1), "scale": scale,
                "shear": torch.stack((shear_x, shear_y), 1)}

    def apply(self, x, params):
        (tx, ty), (shear_x, shear_y) = params["translate"].unbind(1), params["shear"].unbind(1)
        zero = torch.zeros_like(params["angle"])
        matrix = geometry.inverse_affine_matrix(params["angle"], tx, ty, params["scale"], shear_x, shear_y, zero, zero)
        return geometry.warp_affine(x, matrix, self.args["interpolation"], self.fill_for(x))


# --- color --------------------------------------------------------------------------------

_JITTER_SPACE = (PolicyOp("brightness"), PolicyOp("contrast"), PolicyOp("color"), PolicyOp("hue"))


@register
class ColorJitter(Step):
    """torchvision's ColorJitter: factors drawn per sample, applied in a random order per sample."""

    class Draw(Draw):
        ORDER = 0
        APPLIED = 1
        BRIGHTNESS = 2
        CONTRAST = 3
        SATURATION = 4
        HUE = 5

    op = "color_jitter"
    needs_image_channels = True
    reads_unit_range = True
    fields = {
        "brightness": Interval(None, low=0.0, high=1e3, symmetric="around_one", neutral=1.0, doc=_FACTOR),
        "contrast": Interval(None, low=0.0, high=1e3, symmetric="around_one", neutral=1.0, doc=_FACTOR),
        "saturation": Interval(None, low=0.0, high=1e3, symmetric="around_one", neutral=1.0, doc=_FACTOR),
        "hue": Interval(None, low=-0.5, high=0.5, symmetric="plus_minus", neutral=0.0, doc="hue shift range; v means [-v, v]"),
        "p": Number(1.0, low=0.0, high=1.0, doc="probability that a sample is jittered at all"),
    }

    def draw(self, rng, batch):
        ranges = [self.args[k] for k in ("brightness", "contrast", "saturation", "hue")]
        order = rng.permutation(self.Draw.ORDER, 4)  # order[:, t] = which of the four runs t-th
        applied = rng.bernoulli(self.Draw.APPLIED, self.args["p"])
        values = torch.zeros(batch.shape[0], 4, dtype=torch.float64, device=batch.device)
        factor_draws = (self.Draw.BRIGHTNESS, self.Draw.CONTRAST, self.Draw.SATURATION, self.Draw.HUE)
        for k, (bounds, name) in enumerate(zip(ranges, factor_draws)):
            if bounds is not None:
                draw = rng.uniform(name, *bounds).to(torch.float64)
                values[:, k] = draw if k == 3 else draw - 1.0  # kernels take factor - 1, hue as is
        enabled = torch.tensor([r is not None for r in ranges], device=batch.device)
        op_index = torch.where(enabled[order] & applied[:, None], order, torch.full_like(order, policy_kernels.SKIP))
        factors = values + torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64, device=batch.device)
        layers = policy_kernels.LayerParams(_JITTER_SPACE, op_index, values.gather(1, op_index.clamp(min=0)))
        return {"order": op_index, "factors": factors, "_layers": layers,
                "_arranged": policy_kernels.arrange(layers, *batch.shape[-2:])}

    def apply(self, x, params):
        return policy_kernels.apply_layers(x, params["_layers"], params["_arranged"])


@register
class GaussianBlur(Step):
    """torchvision's GaussianBlur with its own sigma per sample (uniform in ``sigma``), applied with ``p``."""

    class Draw(Draw):
        SIGMA = 0
        APPLIED = 1

    op = "gaussian_blur"
    fields = {
        "kernel_size": Size(doc="odd [height, width] of the kernel, or one odd integer (torchvision lists it x, y)"),
        "sigma": Interval((0.1, 2.0), low=1e-3, high=100.0, symmetric="point", neutral=0.0, doc="sigma range, or one sigma"),
        "p": Number(1.0, low=0.0, high=1.0, doc="probability that a sample is blurred"),
    }

    def check(self):
        if any(side % 2 == 0 for side in self.args["kernel_size"]):
            raise SpecError(f"{self.where}: field 'kernel_size': expected odd sides, "
                            f"got {list(self.args['kernel_size'])}")

    def output_shape(self, shape):
        rows, cols = self.args["kernel_size"]
        if rows // 2 >= shape[-2] or cols // 2 >= shape[-1]:
            raise ValueError(f"{self.where}: field 'kernel_size' = [{rows}, {cols}] needs images larger than half "
                             f"the kernel (reflect padding), got {shape[-2]}x{shape[-1]}")
        return shape

    def draw(self, rng, batch):
        return {"sigma": rng.uniform(self.Draw.SIGMA, *self.args["sigma"]),
                "applied": rng.bernoulli(self.Draw.APPLIED, self.args["p"])}

    def apply(self, x, params):
        return grouping.apply_where(x, params["applied"], lambda sub, index: blur.gaussian_blur(
            sub, params["sigma"][index], self.args["kernel_size"]))


@register
class Grayscale(_RandomApply):
    """Grayscale, keeping the channel count, each sample with probability ``p``."""

    op = "grayscale"
    fields = {"p": Number(0.1, low=0.0, high=1.0, neutral=0.0)}

    kernel = staticmethod(color.grayscale)


@register
class Posterize(_RandomApply):
    """Keep the top ``bits`` of every value, each sample with probability ``p``."""

    op = "posterize"
    fields = {"bits": Number(4, low=0, high=8, integer=True, neutral=8), "p": GATE}

    def kernel(self, x):
        return color.posterize(x, torch.full((x.shape[0],), self.args["bits"], device=x.device))


@register
class Solarize(_RandomApply):
    """Invert every value at or above ``threshold``, each sample with probability ``p``."""

    op = "solarize"
    fields = {"threshold": Number(0.5, low=0.0, high=1.0, doc="fraction of the dtype's maximum"), "p": _P}

    def kernel(self, x):
        threshold = self.args["threshold"] * color.max_value(x.dtype)
        return color.solarize(x, torch.full((x.shape[0],), threshold, device=x.device))


@register
class Sharpness(_RandomApply):
    """torchvision's adjust_sharpness by ``factor`` (above 1 sharpens), each sample with probability ``p``."""

    op = "sharpness"
    fields = {"factor": Number(2.0, low=0.0, high=1e3, neutral=1.0), "p": GATE}

    def kernel(self, x):
        return color.sharpness(x, torch.full((x.shape[0],), self.args["factor"], device=x.device))


@register
class Equalize(_RandomApply):
    """Histogram equalization per channel, each sample with probability ``p``."""

    op = "equalize"
    kernel = staticmethod(color.equalize)


@register
class AutoContrast(_RandomApply):
    """Stretch every channel to the full range, each sample with probability ``p``."""

    op = "autocontrast"
    kernel = staticmethod(color.autocontrast)


@register
class Invert(_RandomApply):
    """Invert (maximum minus value), each sample with probability ``p``."""

    op = "invert"
    kernel = staticmethod(color.invert)


# --- erasing and normalization ---------------------------------------------------------------


@register
class RandomErasing(Step):
    """torchvision's RandomErasing per sample; ``value: random`` fills with noise.

    Noise is uniform over 0..255 for uint8 batches and standard normal for float
    batches (torchvision and timm's per-pixel mode, meant for normalized input).
    """

    class Draw(Draw):
        AREA = 0
        RATIO = 1
        TOP = 2
        LEFT = 3
        APPLIED = 4
        NOISE = 5
        NOISE_ANGLE = 6

    op = "random_erasing"
    per_channel = ("value",)
    fields = {
        "p": _P,
        "scale": Interval((0.02, 0.33), low=0.0, high=1.0),
        "ratio": Interval((0.3, 3.3), low=1e-3, high=1e3, doc="box aspect ratio range"),
        "value": NumbersOr((0.0,), word="random", doc="a number, one per channel, or random (noise)"),
    }

    def draw(self, rng, batch):
        height, width = batch.shape[-2:] if batch.sizes is None else batch.sizes.unbind(1)
        uniforms = _box_uniforms(rng, self.Draw)
        boxes, fits = sample_boxes(uniforms, height, width, self.args["scale"], self.args["ratio"], erasing=True)
        applied = rng.bernoulli(self.Draw.APPLIED, self.args["p"]) & fits
        return {"applied": applied, "box": boxes, "_noise": rng}  # noise only for the erased samples, in apply

    def apply(self, x, params):
        channels, height, width = x.shape[1:]
        applied, boxes, rng = params["applied"], params["box"], params["_noise"]
        value = self.fill_for(x, "value")

        def erase(sub: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            if value == "random":
                noise_rng = rng.select(index)
                if sub.is_floating_point():
                    fill = noise_rng.pixel_normal(self.Draw.NOISE, self.Draw.NOISE_ANGLE, (channels, height, width))
                else:
                    fill = (noise_rng.pixel_uniform(self.Draw.NOISE, (channels, height, width)) * 256).floor_()
            else:
                fill = device_constants.on(x.device, tuple(value), torch.float32).view(1, -1, 1, 1)
            return erasing.erase(sub, boxes[index], fill)

        return grouping.apply_where(x, applied, erase)


@register
class Normalize(Step):
    """(x - mean) / std per channel, with mean and std on the [0, 1] scale; outputs float32."""

    op = "normalize"
    draws_nothing = True
    reads_unit_range = True
    per_channel = ("mean", "std")
    fields = {
        "mean": Numbers((0.485, 0.456, 0.406), low=-1e3, high=1e3, doc="per channel, on the 0..1 scale"),
        "std": Numbers((0.229, 0.224, 0.225), low=0.0, high=1e3, exclusive_low=True,
                       doc="per channel, on the 0..1 scale"),
    }

    def output_dtype(self, dtype):
        return torch.float32

    def channel_fix(self, name, values, channels):
        if channels != 1:
            return super().channel_fix(name, values, channels)
        # the channels' averages: about what one grey channel has
        mean, std = (sum(self.args[k]) / len(self.args[k]) for k in ("mean", "std"))
        return (f"grayscale images? repeat the channel ({repeat_channel(len(values))}) or give one mean "
                f"and one std (these averaged: mean {mean:.3g}, std {std:.3g})")

    def apply(self, x, params):
        return normalize(x, self.fill_for(x, "mean"), self.fill_for(x, "std"))  # what clients run when deferred

