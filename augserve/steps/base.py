"""What every pipeline step is: validated fields, a check before work, a per-sample draw, a batched apply.

A step is built from a spec dict (validated field by field) and registered by its ``op`` name.
Running it is ``check_shape`` (every refusal that depends on the batch, from its shape and dtype
alone), ``draw(rng, batch)`` (every random choice, per sample, from the step's named draws and
the batch's shape, never its values), then ``apply(x, params)`` and ``relabel(labels, params)``,
which add no randomness: the torchvision v2 split of ``make_params`` and ``transform``.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

import torch

from augserve.modality import Modality
from augserve.random import SampleRng
from augserve.spec import Field, Number, SpecError, parse_fields


class Batch(NamedTuple):
    """What ``draw`` may know of a batch: never its values."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    modality: Modality
    device: torch.device
    sizes: torch.Tensor | None = None  # (B, 2) heights and widths when samples differ in size (encoded
    # images); ``shape`` then holds -1 for both
    lengths: torch.Tensor | None = None  # (B,) int64 valid lengths along the last axis (waveforms): the rest is
    # padding; None: every sample fills the batch


LENGTHS = "lengths"  # a step that changes samples' valid lengths reports the new ones under this name


Params = dict[str, Any]  # what a step drew: per-sample tensors (B, ...) and plain values; no other tensors
STEPS: dict[str, type["Step"]] = {}  # every registered step by op name
PROBABILITY = Number(0.5, low=0.0, high=1.0, neutral=0.0, doc="probability that a sample is transformed")
# The same for a step whose magnitude fields carry its strength (the probability stays as given).
GATE = Number(0.5, low=0.0, high=1.0, doc="probability that a sample is transformed")


class Step(ABC):
    """A validated pipeline step. Subclasses declare ``op`` and ``fields``."""

    op: ClassVar[str]
    fields: ClassVar[dict[str, Field]] = {}
    needs_image_channels: ClassVar[bool] = False  # color ops need 1 or 3 channels
    reads_unit_range: ClassVar[bool] = False  # takes float pixels as 0..1 (clamps to it, or normalizes from it)
    modalities: ClassVar[tuple[Modality, ...]] = (Modality.IMAGE,)  # batch kinds the step understands
    produces: ClassVar[Modality | None] = None  # a converting step (e.g. waveform -> spectrogram) names its output
    mixes_samples: ClassVar[bool] = False  # combines samples of its batch: never merged across requests
    per_channel: ClassVar[tuple[str, ...]] = ()  # fields holding one value or one per channel
    fixes_size: ClassVar[bool] = False  # returns one size whatever the input's: can start an encoded-image pipeline
    draws_nothing: ClassVar[bool] = False  # deterministic (resize, normalize, ...): strength leaves it as it is
    strength: float = 1.0  # what ``at_strength`` scaled the fields by, for steps that scale a draw as well
    also_scales: ClassVar[str] = ""  # such a draw, for the op reference (e.g. "position → centre")

    def __init__(self, where: str, /, **given: Any):
        self.where = where
        self.args = parse_fields(where, self.fields, given)
        self.check()

    def check(self) -> None:
        """Cross-field checks; raise SpecError."""

    def at_strength(self, strength: float) -> "Step":
        """This step with every magnitude scaled by ``strength`` (0: does nothing, 1: itself).

        Each field with a ``neutral`` value moves towards it (see ``Field.at_strength``); a step
        that draws but has no such field cannot be scaled and refuses any strength but 1.
        """
        if strength == 1.0:
            return self
        scaled = {name: field.at_strength(self.args[name], strength) for name, field in self.fields.items()}
        if not self.draws_nothing and all(field.neutral is None for field in self.fields.values()):
            raise SpecError(f"{self.where}: strength {strength:g}: {self.op} has no magnitude that strength scales "
                            "(use strength 1, or a step with magnitude fields)")
        try:
            step = type(self)(self.where, **scaled)
        except SpecError as error:
            raise SpecError(f"strength {strength:g}: {error}") from None
        step.strength = strength
        return step

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.args.items()}}

    def check_shape(self, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[tuple[int, ...], torch.dtype]:
        """What this step returns for a batch of ``shape`` and ``dtype``, without running it.

        Every refusal that depends on the batch happens here (a ValueError naming step and field),
        so pipelines, and the server before it queues a request, refuse before any work.
        """
        if self.needs_image_channels and shape[1] not in (1, 3):
            raise ValueError(f"{self.where}: expected images with 1 or 3 channels, got {shape[1]}{layout_hint(shape)}")
        for name in self.per_channel:
            self.channel_values(name, shape[1], dtype)
        return self.output_shape(shape), self.output_dtype(dtype)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The batch shape this step turns ``shape`` into; ValueError for one it cannot take."""
        return shape

    def output_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype this step turns a ``dtype`` batch into (float batches run as float32 throughout)."""
        return dtype

    def channel_values(self, name: str, channels: int, dtype: torch.dtype) -> tuple[float, ...] | str:
        """A per-channel field checked against a batch's channels (and the uint8 range)."""
        values = self.args[name]
        if isinstance(values, str):
            return values
        if len(values) not in (1, channels):
            raise ValueError(f"{self.where}: field '{name}' has {len(values)} values (one per channel) but the "
                             f"batch has {channels} channel{'s' * (channels != 1)}: "
                             f"{self.channel_fix(name, values, channels)}")
        in_pixel_units = name in ("fill", "value")
        if in_pixel_units and not dtype.is_floating_point and not all(0 <= v <= 255 for v in values):
            raise ValueError(f"{self.where}: field '{name}' = {list(values)} must lie in [0, 255] for uint8 images")
        return values

    def channel_fix(self, name: str, values: tuple[float, ...], channels: int) -> str:
        """How to make the per-channel field ``name`` and a batch of ``channels`` agree, for the likely
        mistakes (grayscale or RGBA images) first."""
        if channels == 1:
            return f"grayscale images? repeat the channel ({repeat_channel(len(values))}) or give '{name}' one value"
        return layout_hint((0, channels))[2:] or f"give '{name}' 1 or {channels} values"

    def fill_for(self, x: torch.Tensor, name: str = "fill") -> tuple[float, ...] | str:
        return self.channel_values(name, x.shape[1], x.dtype)

    def draw(self, rng: SampleRng, batch: Batch) -> Params:
        """Every random choice for the batch, per sample, from the step's streams and the batch's shape only.

        Keys starting with ``_`` are for ``apply`` alone (curves, positions, noise streams); the rest
        is what the caller sees in ``out.params``.
        """
        return {}

    @abstractmethod
    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """The batch transformed with the drawn parameters: no randomness of its own."""

    def relabel(self, labels: torch.Tensor, params: Params) -> torch.Tensor:
        """The soft labels that go with the transformed batch (most steps leave them alone)."""
        return labels

    def run(self, x: torch.Tensor, labels: torch.Tensor | None, rng: SampleRng, modality: str,
            lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, Params]:
        """One pipeline stage: check, draw, apply; the new batch, the new soft labels, the reported params
        (with the samples' new valid ``lengths`` where the step changes them)."""
        batch = Batch(tuple(x.shape), x.dtype, Modality(modality), x.device, lengths=lengths)
        self.check_shape(batch.shape, batch.dtype)
        params = self.draw(rng, batch)
        x = self.apply(x, params)
        labels = None if labels is None else self.relabel(labels, params)
        return x, labels, public(params)


def repeat_channel(channels: int) -> str:
    """How to give a one-channel batch ``channels`` channels, in torch and in numpy (clients send either)."""
    return f"x.expand(-1, {channels}, -1, -1) (torch) or np.repeat(x, {channels}, axis=1) (numpy)"


def layout_hint(shape: tuple[int, ...]) -> str:
    """What an image batch with an unexpected channel count most likely is, and the fix ("" if unclear)."""
    channels = shape[1]
    if len(shape) == 4 and channels > 4 and shape[-1] in (1, 3, 4):
        return ("; it looks like channels-last (N, H, W, C): permute to (N, C, H, W), "
                "e.g. x.permute(0, 3, 1, 2) (torch) or x.transpose(0, 3, 1, 2) (numpy)")
    if channels == 4:
        return "; RGBA? drop the alpha channel (x[:, :3]) or convert the images to RGB"
    if channels == 2:
        return "; grayscale with alpha? drop the alpha channel (x[:, :1])"
    return ""


def public(params: Params) -> Params:
    """What callers see of a step's params: private ones (``_name``) are for ``apply`` alone."""
    return {name: value for name, value in params.items() if not name.startswith("_")}


class PerSample(list):
    """One entry per sample where a tensor cannot hold it (the words a text step changed): cut with the rows."""

    def select(self, index: torch.Tensor | slice) -> "PerSample":
        if isinstance(index, slice):
            return PerSample(self[index])
        index = index.nonzero().flatten() if index.dtype == torch.bool else index.flatten()
        return PerSample(self[i] for i in index.tolist())


def rows(params: Params, start: int, stop: int) -> Params:
    """A step's params cut to samples start..stop-1: every tensor in them is per sample."""
    return select_rows(params, slice(start, stop))


def select_rows(params: Params, index: torch.Tensor | slice) -> Params:
    """A step's params for the samples at ``index`` (every tensor and ``PerSample`` in them is per sample)."""
    return {k: v[index] if isinstance(v, torch.Tensor) else v.select(index) if isinstance(v, PerSample) else v
            for k, v in params.items()}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step available to pipelines under its ``op`` name."""
    if cls.op in STEPS:
        raise TypeError(f"op {cls.op!r} is registered twice ({STEPS[cls.op].__name__} and {cls.__name__})")
    draws = getattr(cls, "Draw", None)
    if draws is not None:
        enum.unique(draws)  # two names on one number would draw the same values
    STEPS[cls.op] = cls
    return cls
