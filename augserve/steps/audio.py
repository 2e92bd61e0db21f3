"""SpecAugment steps for spectrograms (B, F, T) or (B, C, F, T): masks and the time warp."""

from __future__ import annotations

import math

import torch

from augserve.modality import Modality
from augserve.ops import audio
from augserve.ops.resample import sample_last_axis
from augserve.random import Draw
from augserve.spec import Choice, Number, SpecError
from augserve.steps.base import LENGTHS, Params, Step, register

_VALUE = Choice("zero", options=("zero", "mean"), doc="mask with 0 or with each spectrogram's mean")
_MAX_MASKS = 64


def _mask_value(x: torch.Tensor, how: str) -> torch.Tensor:
    if how == "mean":
        return x.mean(dim=tuple(range(1, x.dim())))
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


def _mask_spans(rng, draws, samples: int, count: int, width_limit: int, length: int) -> Params:
    """``count`` spans per sample (start, width) with widths uniform in [0, width_limit]."""
    if count == 0:
        return {"start": torch.zeros(samples, 0), "width": torch.zeros(samples, 0)}
    start, width = audio.mask_spans(rng.uniform(draws.START, n=count), rng.uniform(draws.WIDTH, n=count),
                                    width_limit, length)
    return {"start": start, "width": width}


def _masked(x: torch.Tensor, params: Params, axis: int, value: str) -> torch.Tensor:
    if params["start"].shape[1] == 0:
        return x
    mask = audio.span_mask(params["start"], params["width"], x.shape[axis])
    return audio.apply_mask(x, mask, axis, _mask_value(x, value))


@register
class FrequencyMask(Step):
    """``count`` masks of width uniform in [0, F] frequency bins, iid per sample."""

    class Draw(Draw):
        START = 0
        WIDTH = 1

    op = "freq_mask"
    modalities = (Modality.SPECTROGRAM,)
    fields = {
        "F": Number(27, low=0, high=4096, integer=True, neutral=0, doc="largest mask width in bins"),
        "count": Number(1, low=0, high=_MAX_MASKS, integer=True, doc="masks per sample (mF)"),
        "value": _VALUE,
    }

    def output_shape(self, shape):
        bins = shape[audio.FREQ_AXIS]
        if self.args["F"] > bins:
            raise ValueError(f"{self.where}: field 'F' = {self.args['F']} is wider than the "
                             f"spectrogram's {bins} frequency bins")
        return shape

    def draw(self, rng, batch):
        return _mask_spans(rng, self.Draw, batch.shape[0], self.args["count"], self.args["F"],
                           batch.shape[audio.FREQ_AXIS])

    def apply(self, x, params):
        return _masked(x, params, audio.FREQ_AXIS, self.args["value"])


@register
class TimeMask(Step):
    """``count`` masks of width uniform in [0, min(T, p * length)] frames, iid per sample.

    ``adaptive_count`` (pM) and ``adaptive_size`` (pS) scale the count and the
    width with the length, as in Park et al. 2020: count = min(count, pM * length),
    T = pS * length.
    """

    class Draw(Draw):
        START = 0
        WIDTH = 1

    op = "time_mask"
    modalities = (Modality.SPECTROGRAM,)
    fields = {
        "T": Number(100, low=0, high=1_000_000, integer=True, neutral=0, doc="largest mask width in frames"),
        "count": Number(1, low=0, high=_MAX_MASKS, integer=True, doc="masks per sample (mT); a cap if adaptive"),
        "p": Number(1.0, low=0.0, high=1.0, doc="largest width as a fraction of the length"),
        "adaptive_count": Number(None, low=0.0, high=1.0, exclusive_low=True, doc="pM"),
        "adaptive_size": Number(None, low=0.0, high=1.0, exclusive_low=True, doc="pS"),
        "value": _VALUE,
    }

    def limits(self, frames: int) -> tuple[int, int]:
        """(mask count, largest width) for a spectrogram of ``frames`` frames."""
        a = self.args
        count = a["count"] if a["adaptive_count"] is None else min(a["count"], math.floor(a["adaptive_count"] * frames))
        width = a["T"] if a["adaptive_size"] is None else math.floor(a["adaptive_size"] * frames)
        return count, min(width, math.floor(a["p"] * frames))

    def draw(self, rng, batch):
        frames = batch.shape[audio.TIME_AXIS]
        count, width_limit = self.limits(frames)
        return _mask_spans(rng, self.Draw, batch.shape[0], count, width_limit, frames)

    def apply(self, x, params):
        return _masked(x, params, audio.TIME_AXIS, self.args["value"])


@register
class SpecTimeWarp(Step):
    """SpecAugment's time warp: frame ``center`` in [W, T - W) moves by up to W frames (piecewise linear)."""

    class Draw(Draw):
        CENTER = 0
        DISTANCE = 1

    op = "spec_time_warp"
    modalities = (Modality.SPECTROGRAM,)
    fields = {"W": Number(80, low=0, high=100_000, integer=True, neutral=0, doc="largest shift in frames")}

    def output_shape(self, shape):
        frames, window = shape[audio.TIME_AXIS], self.args["W"]
        if window and frames <= 2 * window:
            raise ValueError(f"{self.where}: field 'W' = {window} needs more than {2 * window} frames "
                             f"(2W); the spectrogram has {frames}")
        return shape

    def draw(self, rng, batch):
        frames, window = batch.shape[audio.TIME_AXIS], self.args["W"]
        if window == 0:
            return {}
        positions, center, distance = audio.time_warp_positions(rng.uniform(self.Draw.CENTER),
                                                                rng.uniform(self.Draw.DISTANCE), window, frames)
        return {"center": center, "distance": distance, "_positions": positions}

    def apply(self, x, params):
        return sample_last_axis(x, params["_positions"]) if params else x


@register
class LogMel(Step):
    """Waveforms (B, T) or (B, C, T) -> log-mel spectrograms (B, [C,] n_mels, frames) in dB, on the device.

    Lets a client send raw audio: SpecAugment steps follow it in the same pipeline.
    """

    op = "log_mel"
    draws_nothing = True
    modalities = (Modality.WAVEFORM,)
    produces = Modality.SPECTROGRAM
    fields = {
        "sample_rate": Number(16000, low=1000, high=384000, integer=True, doc="Hz"),
        "n_fft": Number(400, low=16, high=16384, integer=True, doc="FFT size = window length (samples)"),
        "hop_length": Number(160, low=1, high=16384, integer=True, doc="samples between frames"),
        "n_mels": Number(80, low=1, high=512, integer=True),
        "f_min": Number(0.0, low=0.0, doc="lowest filter edge, Hz"),
        "f_max": Number(0.0, low=0.0, doc="highest filter edge, Hz; 0: sample_rate / 2"),
        "top_db": Number(80.0, low=0.0, high=200.0, doc="clamp to this far below each spectrogram's peak; 0: off"),
    }

    def check(self) -> None:
        nyquist = self.args["sample_rate"] / 2
        f_max = self.args["f_max"] or nyquist
        if f_max > nyquist:
            raise SpecError(f"{self.where}: field 'f_max' = {f_max:g} is above the Nyquist frequency {nyquist:g}")
        if self.args["f_min"] >= f_max:
            raise SpecError(f"{self.where}: field 'f_min' = {self.args['f_min']:g} must be below f_max = {f_max:g}")
        bins = self.args["n_fft"] // 2 + 1
        if self.args["n_mels"] > bins:
            raise SpecError(f"{self.where}: field 'n_mels' = {self.args['n_mels']} exceeds the {bins} frequency "
                            f"bins of n_fft = {self.args['n_fft']}")

    def output_shape(self, shape):
        if shape[-1] <= self.args["n_fft"] // 2:
            raise ValueError(f"{self.where}: waveforms of {shape[-1]} samples are too short for "
                             f"field 'n_fft' = {self.args['n_fft']} (need more than {self.args['n_fft'] // 2})")
        return (*shape[:-1], self.args["n_mels"], shape[-1] // self.args["hop_length"] + 1)  # centred frames

    def draw(self, rng, batch):
        """No randomness: valid lengths, when the batch has them, become frames (centred frames from sample 0)."""
        if batch.lengths is None:
            return {}
        return {LENGTHS: torch.div(batch.lengths, self.args["hop_length"], rounding_mode="floor") + 1}

    def apply(self, x, params):
        args = dict(self.args)
        args["f_max"] = args["f_max"] or args["sample_rate"] / 2
        return audio.log_mel_spectrogram(x, **args)

