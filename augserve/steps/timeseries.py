"""Time-series steps for float (B, C, T) batches: noise, scaling, warps, slicing, permutation, drift."""

from __future__ import annotations

import dataclasses
from abc import abstractmethod

import torch

from augserve.modality import Modality
from augserve.ops import grouping, timeseries
from augserve.ops.resample import INTERPOLATIONS, sample_last_axis, smooth_curve
from augserve.random import Draw
from augserve.spec import Choice, Interval, Number, Numbers
from augserve.steps.base import Step, register, select_rows

_SIGMA = dict(low=0.0, high=100.0, neutral=0.0)
_KNOTS = Number(4, low=1, high=256, integer=True, doc="interior knots of the random curve")
_P = Number(1.0, low=0.0, high=1.0, doc="probability that a sample is transformed (tsaug's augmenter @ p)")
_INTERPOLATION = Choice("linear", options=INTERPOLATIONS,
                        doc="between steps; nearest keeps spikes whole (linear averages neighbours: a low-pass)")


class _SeriesStep(Step):
    """A series step applied to each sample with probability ``p``: subclasses draw (``draw_change``) and
    apply (``change``) their transformation; the gate is drawn only when p < 1, as draw ``APPLIED`` (so
    p = 1 draws and reports what the step always did)."""

    modalities = (Modality.TIMESERIES,)

    @abstractmethod
    def draw_change(self, rng, batch) -> dict:
        """The transformation's own draws (``draw`` adds the gate)."""

    @abstractmethod
    def change(self, x: torch.Tensor, params) -> torch.Tensor:
        """The transformation, on the samples it is applied to (params cut to them)."""

    def draw(self, rng, batch):
        params = self.draw_change(rng, batch)
        if self.args["p"] < 1:
            params["applied"] = rng.bernoulli(self.Draw.APPLIED, self.args["p"])
        return params

    def apply(self, x, params):
        if "applied" not in params:
            return self.change(x, params)
        return grouping.apply_where(x, params["applied"],
                                    lambda sub, index: self.change(sub, select_rows(params, index)))

    def resample(self, x: torch.Tensor, params) -> torch.Tensor:
        """The series read at the drawn positions, with the step's interpolation."""
        return sample_last_axis(x, params["_positions"], self.args["interpolation"])

    def output_shape(self, shape):
        if shape[-1] < self.needs_length():
            raise ValueError(f"{self.where}: {self.length_rule()}; the series has {shape[-1]}")
        return shape

    def needs_length(self) -> int:
        """The fewest time steps this step can work on."""
        return 1

    def length_rule(self) -> str:
        return f"needs at least {self.needs_length()} time steps"


@register
class Jitter(_SeriesStep):
    """Add Gaussian noise N(0, sigma^2) to every value (Um et al. 2017)."""

    class Draw(Draw):
        NOISE_RADIUS = 0
        NOISE_ANGLE = 1
        APPLIED = 8

    op = "jitter"
    fields = {"sigma": Number(0.03, **_SIGMA, doc="noise standard deviation"), "p": _P}

    def draw_change(self, rng, batch):
        return {"_noise": rng.pixel_normal(self.Draw.NOISE_RADIUS, self.Draw.NOISE_ANGLE, batch.shape[1:],
                                           self.args["sigma"])}

    def change(self, x, params):
        return x + params["_noise"].to(x.dtype)


@register
class Scaling(_SeriesStep):
    """Multiply each channel by a factor ~ N(1, sigma^2), per sample."""

    class Draw(Draw):
        FACTOR = 0
        APPLIED = 8

    op = "scaling"
    fields = {"sigma": Number(0.1, **_SIGMA, doc="factor standard deviation"), "p": _P}

    def draw_change(self, rng, batch):
        return {"factor": rng.normal(self.Draw.FACTOR, 1.0, self.args["sigma"], n=batch.shape[1])}

    def change(self, x, params):
        return x * params["factor"][:, :, None].to(x.dtype)


@register
class MagnitudeWarp(_SeriesStep):
    """Multiply each channel by a smooth curve through ``knots + 2`` values ~ N(1, sigma^2)."""

    class Draw(Draw):
        KNOTS = 0
        APPLIED = 8

    op = "magnitude_warp"
    fields = {"sigma": Number(0.2, **_SIGMA), "knots": _KNOTS, "p": _P}

    def needs_length(self):
        return self.args["knots"] + 2

    def length_rule(self):
        return f"field 'knots' = {self.args['knots']} needs at least {self.needs_length()} time steps (knots + 2)"

    def draw_change(self, rng, batch):
        samples, channels, _ = batch.shape
        knots = rng.normal(self.Draw.KNOTS, 1.0, self.args["sigma"], n=channels * (self.args["knots"] + 2))
        return {"knots": knots.view(samples, channels, -1)}

    def change(self, x, params):
        if self.args["sigma"] == 0:
            return x  # every knot is 1: the spline is 1 up to rounding, and strength 0 must be the identity
        samples, channels, length = x.shape
        curve = smooth_curve(params["knots"].view(samples * channels, -1), length).view(samples, channels, length)
        return x * curve.to(x.dtype)


@register
class TimeWarp(_SeriesStep):
    """Resample along a smooth monotonic warp: speed knots ~ N(1, sigma^2), first and last step fixed."""

    class Draw(Draw):
        SPEED = 0
        APPLIED = 8

    op = "time_warp"
    fields = {"sigma": Number(0.2, **_SIGMA), "knots": _KNOTS, "interpolation": _INTERPOLATION, "p": _P}

    def needs_length(self):
        return self.args["knots"] + 2

    def length_rule(self):
        return f"field 'knots' = {self.args['knots']} needs at least {self.needs_length()} time steps (knots + 2)"

    def draw_change(self, rng, batch):
        speed = rng.normal(self.Draw.SPEED, 1.0, self.args["sigma"], n=self.args["knots"] + 2)
        positions = timeseries.warp_positions(speed, batch.shape[-1])
        return {"positions": positions.to(torch.float32), "_positions": positions}

    def change(self, x, params):
        return self.resample(x, params)


@register
class WindowSlice(_SeriesStep):
    """Crop a window of ``ratio`` of the length and stretch it back (Le Guennec et al. 2016)."""

    class Draw(Draw):
        START = 0
        APPLIED = 8

    op = "window_slice"
    fields = {"ratio": Number(0.9, low=0.0, high=1.0, exclusive_low=True, neutral=1.0,
                              doc="window length as a fraction of the series"),
              "interpolation": _INTERPOLATION, "p": _P}

    def draw_change(self, rng, batch):
        positions = timeseries.window_slice_positions(rng.uniform(self.Draw.START), self.args["ratio"], batch.shape[-1])
        return {"start": positions[:, 0].to(torch.int64), "_positions": positions}

    def change(self, x, params):
        return self.resample(x, params)


@register
class WindowWarp(_SeriesStep):
    """Play one window of ``ratio`` of the length at a speed from ``scales`` (Iwana & Uchida 2021)."""

    class Draw(Draw):
        START = 0
        SCALE = 1
        APPLIED = 8

    op = "window_warp"
    fields = {
        "ratio": Number(0.1, low=0.0, high=1.0, exclusive_low=True, doc="window length as a fraction of the series"),
        "scales": Numbers((0.5, 2.0), low=0.0, high=100.0, exclusive_low=True, neutral=1.0, geometric=True,
                          doc="slow-down factors to pick from"),
        "interpolation": _INTERPOLATION,
        "p": _P,
    }

    def needs_length(self):
        return 3

    def draw_change(self, rng, batch):
        choices = torch.tensor(self.args["scales"], device=batch.device)
        scale = choices[rng.index(self.Draw.SCALE, len(choices))]
        positions = timeseries.window_warp_positions(rng.uniform(self.Draw.START), scale, self.args["ratio"],
                                                     batch.shape[-1])
        return {"scale": scale, "_positions": positions}

    def change(self, x, params):
        return self.resample(x, params)


@register
class WindowWarpOrSlice(_SeriesStep):
    """One of window warping or window slicing per sample, each with probability 1/2: the two transforms that
    helped CNNs most across the UCR archive (Iwana & Uchida 2021), one per sample as the survey applied them."""

    class Draw(Draw):
        OPERATION = 0
        APPLIED = 8

    op = "window_warp_or_slice"
    fields = {
        "warp_ratio": dataclasses.replace(WindowWarp.fields["ratio"], doc="window_warp's window, a fraction of the series"),
        "scales": WindowWarp.fields["scales"],
        "slice_ratio": dataclasses.replace(WindowSlice.fields["ratio"], doc="window_slice's window, a fraction of the series"),
        "interpolation": _INTERPOLATION,
        "p": _P,
    }

    def check(self):
        self.warp = WindowWarp(f"{self.where} window_warp", ratio=self.args["warp_ratio"], scales=self.args["scales"])
        self.slice = WindowSlice(f"{self.where} window_slice", ratio=self.args["slice_ratio"])

    def needs_length(self):
        return self.warp.needs_length()

    def draw_change(self, rng, batch):
        sliced = rng.index(self.Draw.OPERATION, 2).bool()
        warp = self.warp.draw_change(rng.fork(1), batch)
        window = self.slice.draw_change(rng.fork(2), batch)
        positions = torch.where(sliced[:, None], window["_positions"], warp["_positions"])
        return {"sliced": sliced, "scale": torch.where(sliced, torch.ones_like(warp["scale"]), warp["scale"]),
                "_positions": positions}

    def change(self, x, params):
        return self.resample(x, params)


@register
class Permutation(_SeriesStep):
    """Cut into 1..max_segments pieces at random points and shuffle them (Um et al. 2017)."""

    class Draw(Draw):
        SEGMENTS = 0
        CUTS = 1
        ORDER = 2
        APPLIED = 8

    op = "permutation"
    fields = {"max_segments": Number(5, low=1, high=256, integer=True, neutral=1, doc="at most this many pieces"),
              "p": _P}

    def needs_length(self):
        return self.args["max_segments"]

    def length_rule(self):
        return f"field 'max_segments' = {self.args['max_segments']} needs at least as many time steps"

    def draw_change(self, rng, batch):
        slots = self.args["max_segments"]
        segments = 1 + rng.index(self.Draw.SEGMENTS, slots)
        cuts = rng.uniform(self.Draw.CUTS, n=max(slots - 1, 1))[:, : slots - 1]
        positions = timeseries.permutation_positions(cuts, segments, rng.permutation(self.Draw.ORDER, slots),
                                                     batch.shape[-1])
        return {"segments": segments, "_positions": positions}

    def change(self, x, params):
        return x.gather(-1, params["_positions"][:, None, :].expand_as(x))


@register
class Drift(_SeriesStep):
    """Add a smooth random-walk trend per channel, peak ``max_drift`` times the series' range (tsaug)."""

    class Draw(Draw):
        STEPS = 0
        AMOUNT = 1
        APPLIED = 8

    op = "drift"
    fields = {
        "max_drift": Interval(0.5, low=0.0, high=100.0, symmetric="point", neutral=0.0,
                              doc="peak drift, fixed or a [min, max] range"),
        "points": Number(3, low=1, high=256, integer=True, doc="n_drift_points: where the trend turns"),
        "p": _P,
    }

    def needs_length(self):
        return 2  # the trend is a spline over the series

    def draw_change(self, rng, batch):
        samples, channels, length = batch.shape
        steps = rng.normal(self.Draw.STEPS, 0.0, 1.0, n=channels * (self.args["points"] + 2))
        curve = timeseries.drift_curve(steps.view(samples * channels, -1), length).view(samples, channels, length)
        return {"amount": rng.uniform(self.Draw.AMOUNT, *self.args["max_drift"], n=channels), "_curve": curve}

    def change(self, x, params):
        spread = x.amax(dim=-1) - x.amin(dim=-1)
        return x + (params["_curve"] * (params["amount"] * spread)[..., None]).to(x.dtype)

