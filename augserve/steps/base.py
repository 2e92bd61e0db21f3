"""What every pipeline step is: validated fields, a per-sample draw, a batched apply.

Each step is built from a spec dict (validated field by field) and run as
``step.run(x, labels, rng, modality) -> (x, labels, params)``: ``rng`` is the
step's own per-sample stream and ``params`` the per-sample provenance it drew.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from augserve.modality import Modality
from augserve.random import SampleRng
from augserve.spec import Field, Number, parse_fields

Params = dict[str, Any]  # what a step drew: per-sample tensors (B, ...) and plain values; no other tensors
STEPS: dict[str, type["Step"]] = {}  # every registered step by op name
PROBABILITY = Number(0.5, low=0.0, high=1.0, doc="probability that a sample is transformed")


class Step(ABC):
    """A validated pipeline step. Subclasses declare ``op`` and ``fields``."""

    op: ClassVar[str]
    fields: ClassVar[dict[str, Field]] = {}
    needs_image_channels: ClassVar[bool] = False  # color ops need 1 or 3 channels
    modalities: ClassVar[tuple[Modality, ...]] = (Modality.IMAGE,)  # batch kinds the step understands
    produces: ClassVar[Modality | None] = None  # a converting step (e.g. waveform -> spectrogram) names its output
    mixes_samples: ClassVar[bool] = False  # combines samples of its batch: never merged across requests
    per_channel: ClassVar[tuple[str, ...]] = ()  # fields holding one value or one per channel

    def __init__(self, where: str, **given: Any):
        self.where = where
        self.args = parse_fields(where, self.fields, given)
        self.check()

    def check(self) -> None:
        """Cross-field checks; raise SpecError."""

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.args.items()}}

    def check_shape(self, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[tuple[int, ...], torch.dtype]:
        """What this step returns for a batch of ``shape`` and ``dtype``, without running it.

        Every refusal that depends on the batch happens here (a ValueError naming step and field),
        so pipelines, and the server before it queues a request, refuse before any work.
        """
        if self.needs_image_channels and shape[1] not in (1, 3):
            raise ValueError(f"{self.where}: expected images with 1 or 3 channels, got {shape[1]}")
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
            raise ValueError(f"{self.where}: field '{name}' has {len(values)} values; "
                             f"expected 1 or {channels} (one per channel)")
        in_pixel_units = name in ("fill", "value")
        if in_pixel_units and not dtype.is_floating_point and not all(0 <= v <= 255 for v in values):
            raise ValueError(f"{self.where}: field '{name}' = {list(values)} must lie in [0, 255] for uint8 images")
        return values

    def fill_for(self, x: torch.Tensor, name: str = "fill") -> tuple[float, ...] | str:
        return self.channel_values(name, x.shape[1], x.dtype)

    @abstractmethod
    def run(self, x: torch.Tensor, labels: torch.Tensor | None, rng: SampleRng,
            modality: str) -> tuple[torch.Tensor, torch.Tensor | None, Params]:
        """One pipeline stage: the new batch, the new soft labels, per-sample provenance."""


class PixelStep(Step):
    """A step that changes the batch and leaves labels alone (every image op)."""

    @abstractmethod
    def __call__(self, x: torch.Tensor, rng: SampleRng) -> tuple[torch.Tensor, Params]:
        """Apply to a batch; return the new batch and per-sample provenance."""

    def run(self, x, labels, rng, modality):
        self.check_shape(tuple(x.shape), x.dtype)
        x, params = self(x, rng)
        return x, labels, params




def register(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step available to pipelines under its ``op`` name."""
    if cls.op in STEPS:
        raise TypeError(f"op {cls.op!r} is registered twice ({STEPS[cls.op].__name__} and {cls.__name__})")
    draws = getattr(cls, "Draw", None)
    if draws is not None:
        enum.unique(draws)  # two names on one number would draw the same values
    STEPS[cls.op] = cls
    return cls
