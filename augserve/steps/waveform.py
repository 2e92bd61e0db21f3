"""Waveform steps for float (B, T) or (B, C, T) audio: gain, polarity, shift, noise, reverb, filters, speed,
time stretch and pitch shift, each per sample with probability ``p``.

Every step reports per sample whether it was ``applied`` and what it drew, and works on each sample's
valid part (``lengths``; the padding after it stays zero, levels and SNRs are measured over it). Steps
that change a sample's duration (``speed``, ``time_stretch``) keep the batch's length, zero-padded or
cut, and report the new valid ``lengths``. The semantics follow torch-audiomentations, audiomentations
and librosa; docs/pipelines.md says where augserve differs and why.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch

from augserve import sound_sets
from augserve.modality import Modality
from augserve.ops import grouping
from augserve.ops import waveform as wave
from augserve.random import Draw
from augserve.spec import Choice, Flag, Interval, Name, Number, Numbers, SpecError
from augserve.steps.base import LENGTHS, Params, Step, register, select_rows

_P = Number(0.5, low=0.0, high=1.0, neutral=0.0, doc="probability that a sample is transformed")
_RATE = Number(16000, low=1000, high=384000, integer=True, doc="Hz")
_SNR = dict(low=-40.0, high=120.0)
COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power falls as 1/f^decay (audiomentations' f_decay)


def valid_lengths(batch) -> torch.Tensor:
    """Each sample's valid length (B,) where draws are made: as sent, or the whole row."""
    if batch.lengths is not None:
        return batch.lengths.to(batch.device)
    return torch.full((batch.shape[0],), batch.shape[-1], dtype=torch.int64, device=batch.device)


def _mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def uniform_on_mel(u: torch.Tensor, low_hz: float, high_hz: float) -> torch.Tensor:
    """Frequencies uniform on the mel scale between two in Hz (torch-audiomentations' filter draws)."""
    mel = _mel(low_hz) + u.double() * (_mel(high_hz) - _mel(low_hz))
    return (700.0 * (torch.exp(mel * (math.log(10.0) / 2595.0)) - 1.0)).to(torch.float32)  # exp: see Gain


class WaveformStep(Step):
    """A waveform step gated per sample by ``p`` (the gate ``applied`` is always drawn and reported):
    subclasses draw (``draw_change``) and apply (``change``, on (B, C, T) with params cut to its rows)."""

    modalities = (Modality.WAVEFORM,)

    @abstractmethod
    def draw_change(self, rng, batch, lengths: torch.Tensor) -> Params:
        """The transformation's own draws; a step that changes durations adds the new ``lengths``."""

    @abstractmethod
    def change(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """The transformation of (B, C, T) samples, their valid lengths in ``params["_lengths"]``."""

    def draw(self, rng, batch):
        lengths = valid_lengths(batch)
        params = self.draw_change(rng, batch, lengths)
        applied = rng.bernoulli(self.Draw.APPLIED, self.args["p"])
        params.update(applied=applied, _lengths=lengths)
        if LENGTHS in params:
            params[LENGTHS] = torch.where(applied, params[LENGTHS], lengths)
        return params

    def apply(self, x, params):
        channels = x if x.dim() == 3 else x[:, None]
        out = grouping.apply_where(channels, params["applied"],
                                   lambda sub, index: self.change(sub, select_rows(params, index)))
        return out.view(x.shape)


@register
class Gain(WaveformStep):
    """x * 10^(g / 20), g uniform in [min_gain_db, max_gain_db] (torch-audiomentations ``Gain``)."""

    class Draw(Draw):
        GAIN = 0
        APPLIED = 8

    op = "gain"
    fields = {"min_gain_db": Number(-18.0, low=-120.0, high=120.0, neutral=0.0, doc="dB"),
              "max_gain_db": Number(6.0, low=-120.0, high=120.0, neutral=0.0, doc="dB"), "p": _P}

    def check(self):
        if self.args["min_gain_db"] > self.args["max_gain_db"]:
            raise SpecError(f"{self.where}: field 'min_gain_db' = {self.args['min_gain_db']:g} is above "
                            f"max_gain_db = {self.args['max_gain_db']:g}")

    def draw_change(self, rng, batch, lengths):
        return {"gain_db": rng.uniform(self.Draw.GAIN, self.args["min_gain_db"], self.args["max_gain_db"])}

    def change(self, x, params):
        # 10^(g/20) as exp: pow's vector loop and scalar tail round differently, so its bits would depend on
        # where a sample sits in the batch
        return x * torch.exp(params["gain_db"].to(x.dtype) * (math.log(10.0) / 20.0))[:, None, None]


@register
class PolarityInversion(WaveformStep):
    """-x: the same sound to the ear, another waveform to a model."""

    class Draw(Draw):
        APPLIED = 8

    op = "polarity_inversion"
    fields = {"p": _P}

    def draw_change(self, rng, batch, lengths):
        return {}

    def change(self, x, params):
        return -x


@register
class TimeShift(WaveformStep):
    """Shift by s samples, s uniform in [-max_shift, max_shift] x the sample's length, rolled over within the
    valid part or zero-filled (torch-audiomentations ``Shift`` in fractions of the length)."""

    class Draw(Draw):
        SHIFT = 0
        APPLIED = 8

    op = "time_shift"
    fields = {"max_shift": Number(0.5, low=0.0, high=1.0, neutral=0.0, doc="largest shift, fraction of the length"),
              "rollover": Flag(True, doc="what leaves one end enters at the other; false: zeros enter"),
              "p": _P}

    def draw_change(self, rng, batch, lengths):
        fraction = rng.uniform(self.Draw.SHIFT, -self.args["max_shift"], self.args["max_shift"])
        return {"shift": (fraction.double() * lengths).round().to(torch.int64)}

    def change(self, x, params):
        return wave.shift(x, params["shift"], params["_lengths"], self.args["rollover"])


class _Mixing(WaveformStep):
    """Something added at a signal-to-noise ratio drawn uniformly in dB, measured over the valid part."""

    def check(self):
        if self.args["min_snr_db"] > self.args["max_snr_db"]:
            raise SpecError(f"{self.where}: field 'min_snr_db' = {self.args['min_snr_db']:g} is above "
                            f"max_snr_db = {self.args['max_snr_db']:g}")

    def draw_snr(self, rng) -> torch.Tensor:
        return rng.uniform(self.Draw.SNR, self.args["min_snr_db"], self.args["max_snr_db"])


_SNR_FIELDS = {"min_snr_db": Number(3.0, **_SNR, doc="dB"), "max_snr_db": Number(30.0, **_SNR, doc="dB")}


@register
class Noise(_Mixing):
    """White, pink or brown noise (power ~ 1/f^f_decay) at snr_db: 20 log10(rms(x) / rms(noise)) over the
    valid part, all channels (audiomentations' per-example definition); a silent sample gets none."""

    class Draw(Draw):
        SNR = 0
        NOISE_RADIUS = 1
        NOISE_ANGLE = 2
        APPLIED = 8

    op = "noise"
    fields = {**_SNR_FIELDS, "color": Choice("white", options=tuple(COLORS), doc="noise colour"),
              "f_decay": Number(None, low=-6.0, high=6.0, doc="power decay exponent; overrides color"), "p": _P}

    def decay(self) -> float:
        return COLORS[self.args["color"]] if self.args["f_decay"] is None else self.args["f_decay"]

    def draw_change(self, rng, batch, lengths):
        white = rng.pixel_normal(self.Draw.NOISE_RADIUS, self.Draw.NOISE_ANGLE, batch.shape[1:])
        return {"snr_db": self.draw_snr(rng), "_noise": white}

    def change(self, x, params):
        lengths = params["_lengths"]
        noise = wave.colored_noise(params["_noise"].view(x.shape).to(x.dtype), self.decay(), lengths)
        return wave.add_at_snr(x, noise, params["snr_db"], lengths)


class _ReadsSet:
    """A step that reads a sound set named in its spec: known when the pipeline is built, sample rates
    checked when a batch comes (a served set is read on first use)."""

    def sound_set(self, field: str) -> sound_sets.SoundSet:
        name = self.args[field]
        try:
            found = sound_sets.get(name)
        except KeyError:
            raise ValueError(f"{self.where}: field '{field}': {sound_sets.unknown_message(name)}") from None
        if found.sample_rate != self.args["sample_rate"]:
            raise ValueError(f"{self.where}: sound set {name!r} is at {found.sample_rate} Hz, the step at "
                             f"field 'sample_rate' = {self.args['sample_rate']}: give the step the set's rate")
        return found

    def check_known(self, field: str) -> None:
        name = self.args[field]
        if name is not None and not sound_sets.known(name):
            raise SpecError(f"{self.where}: field '{field}': {sound_sets.unknown_message(name)}")


@register
class BackgroundNoise(_ReadsSet, _Mixing):
    """A clip of a sound set, from an offset drawn per sample and tiled when shorter than the sample, added
    at snr_db as ``noise`` adds (audiomentations ``AddBackgroundNoise``)."""

    class Draw(Draw):
        SNR = 0
        INDEX = 1
        OFFSET = 2
        APPLIED = 8

    op = "background_noise"
    fields = {"sounds": Name(doc="the sound set the noises come from"), **_SNR_FIELDS, "sample_rate": _RATE,
              "p": _P}

    def check(self):
        super().check()
        self.check_known("sounds")

    def draw_change(self, rng, batch, lengths):
        noises = self.sound_set("sounds")
        index = rng.index(self.Draw.INDEX, len(noises))
        return {"snr_db": self.draw_snr(rng), "noise_index": index,
                "_offset": rng.uniform(self.Draw.OFFSET).double()}

    def change(self, x, params):
        clips, lengths = self.sound_set("sounds").on(x.device)
        noise = wave.tiled_clips(clips, lengths, params["noise_index"], params["_offset"], x.shape[-1])
        noise = noise[:, None].to(x.dtype).expand_as(x) * wave.valid_mask(params["_lengths"], x.shape[-1])
        return wave.add_at_snr(x, noise, params["snr_db"], params["_lengths"])


@register
class Reverb(_ReadsSet, WaveformStep):
    """Convolution with a room impulse response, cropped to the input's length (torchaudio ``fftconvolve``
    "full", first T samples): from a sound set of responses, or synthetic (exponentially decaying noise
    after a direct path) with rt60 uniform in [min_rt60, max_rt60] seconds."""

    class Draw(Draw):
        RT60 = 0
        RESPONSE = 1
        INDEX = 2
        APPLIED = 8

    op = "reverb"
    fields = {"min_rt60": Number(0.2, low=0.01, high=5.0, doc="seconds to decay by 60 dB"),
              "max_rt60": Number(0.8, low=0.01, high=5.0, doc="seconds"),
              "impulses": Name(None, doc="a sound set of impulse responses instead of synthetic ones"),
              "sample_rate": _RATE, "p": _P}

    def check(self):
        if self.args["min_rt60"] > self.args["max_rt60"]:
            raise SpecError(f"{self.where}: field 'min_rt60' = {self.args['min_rt60']:g} is above "
                            f"max_rt60 = {self.args['max_rt60']:g}")
        self.check_known("impulses")

    def response_length(self, length: int) -> int:
        """Synthetic responses: long enough for the longest decay to reach -60 dB, and no longer than the
        batch (only the first T samples of the convolution are kept, so later ones could not matter)."""
        return min(math.ceil(self.args["max_rt60"] * self.args["sample_rate"]), length)

    def draw_change(self, rng, batch, lengths):
        if self.args["impulses"] is not None:
            return {"ir_index": rng.index(self.Draw.INDEX, len(self.sound_set("impulses")))}
        return {"rt60": rng.uniform(self.Draw.RT60, self.args["min_rt60"], self.args["max_rt60"]),
                "_u": rng.pixel_uniform(self.Draw.RESPONSE, (self.response_length(batch.shape[-1]),))}

    def change(self, x, params):
        if self.args["impulses"] is not None:  # a set's responses scaled to unit energy, as synthetic ones are
            clips, _ = self.sound_set("impulses").on(x.device)
            response = clips.index_select(0, params["ir_index"])[:, :x.shape[-1]]
            response = response / response.norm(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
        else:
            response = wave.synthetic_rir(params["_u"], params["rt60"], self.args["sample_rate"])
        return wave.reverb(x, response.to(x.dtype), params["_lengths"])


class _Filter(WaveformStep):
    """A windowed-sinc FIR filter per sample, zero-phase: -6 dB at its cutoff (torch-audiomentations' filters
    are -3 dB Butterworth responses; the FIR is linear-phase and has no ringing that depends on the cutoff)."""

    def check(self):
        low, high = self.args[self.range_fields[0]], self.args[self.range_fields[1]]
        if low > high:
            raise SpecError(f"{self.where}: field '{self.range_fields[0]}' = {low:g} is above "
                            f"{self.range_fields[1]} = {high:g}")
        nyquist = self.args["sample_rate"] / 2
        if high >= nyquist:
            raise SpecError(f"{self.where}: field '{self.range_fields[1]}' = {high:g} must be below the Nyquist "
                            f"frequency {nyquist:g} Hz of sample_rate {self.args['sample_rate']}")


def _cutoff(default_low: float, default_high: float) -> dict:
    return {"min_cutoff_hz": Number(default_low, low=1.0, high=192000.0, doc="Hz"),
            "max_cutoff_hz": Number(default_high, low=1.0, high=192000.0, doc="Hz")}


@register
class LowPass(_Filter):
    """Keep what lies below a cutoff drawn uniformly on the mel scale (torch-audiomentations ``LowPassFilter``)."""

    class Draw(Draw):
        CUTOFF = 0
        APPLIED = 8

    op = "lowpass"
    range_fields = ("min_cutoff_hz", "max_cutoff_hz")
    fields = {**_cutoff(150.0, 7500.0), "sample_rate": _RATE, "p": _P}

    def draw_change(self, rng, batch, lengths):
        return {"cutoff_hz": uniform_on_mel(rng.uniform(self.Draw.CUTOFF), self.args["min_cutoff_hz"],
                                            self.args["max_cutoff_hz"])}

    def change(self, x, params):
        return wave.lowpass(x, params["cutoff_hz"], params["_lengths"], self.args["sample_rate"])


@register
class HighPass(LowPass):
    """Keep what lies above a cutoff drawn uniformly on the mel scale (torch-audiomentations ``HighPassFilter``)."""

    class Draw(Draw):
        CUTOFF = 0
        APPLIED = 8

    op = "highpass"
    fields = {**_cutoff(20.0, 2400.0), "sample_rate": _RATE, "p": _P}

    def change(self, x, params):
        return wave.highpass(x, params["cutoff_hz"], params["_lengths"], self.args["sample_rate"])


@register
class BandPass(_Filter):
    """Keep a band around a centre drawn uniformly on the mel scale, its width a fraction of the centre drawn
    uniformly (torch-audiomentations ``BandPassFilter``)."""

    class Draw(Draw):
        CENTER = 0
        BANDWIDTH = 1
        APPLIED = 8

    op = "bandpass"
    range_fields = ("min_center_hz", "max_center_hz")
    fields = {"min_center_hz": Number(200.0, low=1.0, high=192000.0, doc="Hz"),
              "max_center_hz": Number(4000.0, low=1.0, high=192000.0, doc="Hz"),
              "bandwidth": Interval((0.5, 1.99), low=0.01, high=1.99, doc="bandwidth as a fraction of the centre"),
              "sample_rate": _RATE, "p": _P}

    def draw_change(self, rng, batch, lengths):
        center = uniform_on_mel(rng.uniform(self.Draw.CENTER), self.args["min_center_hz"],
                                self.args["max_center_hz"])
        low, high = self.args["bandwidth"]
        return {"center_hz": center, "bandwidth": rng.uniform(self.Draw.BANDWIDTH, low, high)}

    def change(self, x, params):
        return wave.bandpass(x, params["center_hz"], params["bandwidth"], params["_lengths"],
                             self.args["sample_rate"])


@register
class Speed(WaveformStep):
    """Resample by a factor: pitch and tempo change together (Kaldi's 0.9 / 1.0 / 1.1 speed perturbation);
    a factor above 1 is faster and shorter. ``factors`` are chosen from with equal chance; ``range`` draws
    uniformly instead."""

    class Draw(Draw):
        FACTOR = 0
        APPLIED = 8

    op = "speed"
    fields = {"factors": Numbers((0.9, 1.0, 1.1), low=0.25, high=4.0, doc="1 to 4 factors chosen from"),
              "range": Interval(None, low=0.25, high=4.0, doc="[low, high]: a factor drawn uniformly instead"),
              "p": _P}

    def check(self):
        if self.args["range"] is not None and self.args["factors"] != self.fields["factors"].default:
            raise SpecError(f"{self.where}: fields 'factors' and 'range' both say how the factor is drawn: "
                            "give one")

    def draw_change(self, rng, batch, lengths):
        if self.args["range"] is not None:
            factor = rng.uniform(self.Draw.FACTOR, *self.args["range"])
        else:
            choices = torch.tensor(self.args["factors"], dtype=torch.float32, device=lengths.device)
            factor = choices[rng.index(self.Draw.FACTOR, len(choices))]
        return {"factor": factor, LENGTHS: wave.sped_lengths(lengths, factor, batch.shape[-1])}

    def change(self, x, params):
        return wave.resample_by(x, params["factor"], params["_lengths"])[0]


@register
class TimeStretch(WaveformStep):
    """Phase vocoder: tempo by a rate uniform in [min_rate, max_rate], pitch kept (librosa ``time_stretch``,
    audiomentations ``TimeStretch``); a rate above 1 is faster and shorter."""

    class Draw(Draw):
        RATE = 0
        APPLIED = 8

    op = "time_stretch"
    fields = {"min_rate": Number(0.8, low=0.25, high=4.0, neutral=1.0, geometric=True),
              "max_rate": Number(1.25, low=0.25, high=4.0, neutral=1.0, geometric=True), "p": _P}

    def check(self):
        if self.args["min_rate"] > self.args["max_rate"]:
            raise SpecError(f"{self.where}: field 'min_rate' = {self.args['min_rate']:g} is above "
                            f"max_rate = {self.args['max_rate']:g}")

    def draw_change(self, rng, batch, lengths):
        rate = rng.uniform(self.Draw.RATE, self.args["min_rate"], self.args["max_rate"])
        return {"rate": rate, LENGTHS: wave.stretched_lengths(lengths, rate, batch.shape[-1])}

    def change(self, x, params):
        return wave.time_stretch(x, params["rate"], params["_lengths"])[0]


@register
class PitchShift(WaveformStep):
    """Shift by semitones uniform in [min_semitones, max_semitones], continuous, tempo and length kept
    (librosa ``pitch_shift``: a time stretch, then a resample back)."""

    class Draw(Draw):
        SEMITONES = 0
        APPLIED = 8

    op = "pitch_shift"
    fields = {"min_semitones": Number(-4.0, low=-24.0, high=24.0, neutral=0.0),
              "max_semitones": Number(4.0, low=-24.0, high=24.0, neutral=0.0), "p": _P}

    def check(self):
        if self.args["min_semitones"] > self.args["max_semitones"]:
            raise SpecError(f"{self.where}: field 'min_semitones' = {self.args['min_semitones']:g} is above "
                            f"max_semitones = {self.args['max_semitones']:g}")

    def draw_change(self, rng, batch, lengths):
        return {"semitones": rng.uniform(self.Draw.SEMITONES, self.args["min_semitones"],
                                         self.args["max_semitones"])}

    def change(self, x, params):
        return wave.pitch_shift(x, params["semitones"], params["_lengths"],
                                max_semitones=max(abs(self.args["min_semitones"]), abs(self.args["max_semitones"])))

