"""Pipelines as data: a spec (preset, timm string, step list, JSON/YAML) -> a validated Pipeline.

>>> pipe = Pipeline.from_spec("imagenet-randaug")
>>> out = pipe(x, labels, seed=0, keys=keys, num_classes=1000)
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from augserve import device_plan, packing, spec_text, timm_strings
from augserve.encoded import EncodedBatch, first_steps, is_encoded_image
from augserve.labels import as_soft_labels
from augserve.ops.casting import to_out_dtype
from augserve.presets import PRESETS
from augserve.random import SampleRng
from augserve.runtime import keep_freed_memory
from augserve.spec import SpecError, did_you_mean, is_spec_text, shown
from augserve.modality import Modality
from augserve.steps import STEPS, LabelSmoothing, Normalize, Step
from augserve.steps.base import LENGTHS, layout_hint, public, rows
from augserve.text import run as text_run

INPUT_DTYPES = (torch.uint8, torch.float16, torch.float32, torch.float64)
MAX_STRENGTH = 10.0
OUT_DTYPES = {"uint8": torch.uint8, "float16": torch.float16, "float32": torch.float32}
# How a pipeline runs: grouped (the samples that drew an op gathered and run: the CPU's), device (draws on
# the host, every op branch-free over the batch: a GPU's), auto (device off the CPU, grouped on it).
EXECUTIONS = ("auto", "grouped", "device")
# Float images are 0..1. Resampling (bicubic, Lanczos) overshoots a little and is let through; a batch
# further out is 0..255 pixels or already normalized, which a step that reads pixel values would ruin.
UNIT_RANGE_SLACK = 0.25


@dataclass
class AugmentOutput:
    """What a pipeline returns: the batch, soft labels, and per-step provenance."""

    x: torch.Tensor | list[str]  # sentences for a text pipeline
    labels: torch.Tensor | None
    params: list[dict[str, Any]] = field(default_factory=list)
    lengths: torch.Tensor | None = None  # (B,) valid lengths along the last axis, for batches that came with them

    @property
    def label_smoothing(self) -> float:
        """The epsilon already applied to ``labels`` (0.0: unsmoothed), so nothing smooths twice."""
        return next((p["epsilon"] for p in self.params if p["op"] == LabelSmoothing.op), 0.0)

    def rows(self, start: int, stop: int) -> "AugmentOutput":
        """Samples start..stop-1 (x, labels and every step's per-sample params), as views: a merged batch split back."""
        return AugmentOutput(self.x[start:stop], None if self.labels is None else self.labels[start:stop],
                             [rows(step, start, stop) for step in self.params],
                             None if self.lengths is None else self.lengths[start:stop])


@dataclass
class Prepared:
    """Encoded images taken through a pipeline's first steps: the dense batch and what those steps drew.

    ``Pipeline.prepare`` makes one (the decoding half of the work) and calling the pipeline on it
    does the rest, so a server can decode the next requests while its device runs the current one.
    """

    x: torch.Tensor
    params: list[dict[str, Any]]  # per first step: per-sample tensors and plain values, private ones included

    def __len__(self) -> int:
        return self.x.shape[0]

    @classmethod
    def concat(cls, parts: list["Prepared"]) -> "Prepared":
        """Several requests' prepared batches as one (same pipeline: the same first steps)."""
        params = [{name: torch.cat([p.params[step][name] for p in parts]) if isinstance(value, torch.Tensor)
                   else value for name, value in first.items()} for step, first in enumerate(parts[0].params)]
        return cls(torch.cat([p.x for p in parts]), params)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Prepared":
        return Prepared(self.x.to(device, non_blocking=non_blocking), self.params)


def _spec_data(spec: Any) -> Any:
    """Text (preset, timm string, JSON/YAML) or a file -> plain data; data passes through."""
    if isinstance(spec, pathlib.Path):
        try:
            text = spec.read_text()
        except OSError as error:
            raise SpecError(f"pipeline file {spec}: {error}") from None
        return spec_text.load(text, f"pipeline file {spec}", str(spec))
    if not isinstance(spec, str):
        return spec
    if len(spec) > spec_text.MAX_SPEC_CHARS:
        return spec_text.load(spec)  # refused before any other look at it
    name = spec.strip()
    if name in PRESETS:
        return PRESETS[name][1]
    if timm_strings.is_timm_string(name):
        return timm_strings.parse(name)
    if is_spec_text(spec) or name.startswith("- "):  # before the strip: "- {op: hflip}\n" is one step of YAML
        return spec_text.load(spec)
    file = " (a file of that name exists: pass pathlib.Path(...) to read it, or @file on the command line)" \
        if len(name) < 4096 and pathlib.Path(name).is_file() else ""
    raise SpecError(f"pipeline: unknown preset {shown(name)}{did_you_mean(name, PRESETS)}{file} "
                    f"(presets: {', '.join(PRESETS)}; "
                    "or a timm string like rand-m9-mstd0.5-inc1, augmix-m5-w4-d2 or original-mstd0.5, "
                    "or a list of steps)")


def _split_spec(data: Any) -> tuple[list[Any], Any, text_run.TextOptions | None]:
    """Plain data -> (step dicts, declared modality or None, how text is read if the spec says)."""
    modality, text = None, None
    if isinstance(data, dict) and "steps" in data:
        unknown = [key for key in data if key not in ("steps", "modality", *text_run.OPTIONS)]
        if unknown:
            raise text_run.unknown_option(unknown[0])
        given = {name: data[name] for name in text_run.OPTIONS if name in data}
        text = text_run.TextOptions.parse(given) if given else None
        modality, data = data.get("modality"), _spec_data(data["steps"])
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, (list, tuple)):
        raise SpecError(f"pipeline: expected a preset name, a list of steps or {{'steps': [...]}}, "
                        f"got {type(data).__name__}")
    return list(data), modality, text


def compile_steps(step_dicts: list[Any]) -> list[Step]:
    if not step_dicts:
        raise SpecError("pipeline: expected at least one step, got none")
    if len(step_dicts) > spec_text.MAX_STEPS:
        raise SpecError(f"pipeline: {len(step_dicts)} steps; the limit is {spec_text.MAX_STEPS}")
    steps = []
    for number, raw in enumerate(step_dicts, start=1):  # counted as people count the steps they wrote
        if not isinstance(raw, dict):
            raise SpecError(f"step {number}: expected a mapping like {{'op': 'hflip'}}, got {shown(raw)}")
        options = dict(raw)
        op = options.pop("op", None)
        if not isinstance(op, str) or op not in STEPS:
            raise SpecError(f"step {number}: field 'op': unknown op {shown(op)}{did_you_mean(op, STEPS)} "
                            f"({len(STEPS)} ops: `augserve pipelines --ops` lists them)")
        names = [name for name in options if not isinstance(name, str)]
        if names:
            raise SpecError(f"step {number} ({op}): field names are text, got {shown(names[0])}")
        steps.append(STEPS[op](f"step {number} ({op})", **options))
    return steps


def _single_modality(steps: list[Step], modality: str | None) -> str | None:
    """The one modality every step works on: declared, or implied by modality-specific steps."""
    for step in steps:
        if modality is not None and modality not in step.modalities:
            raise SpecError(f"{step.where}: works on {' and '.join(step.modalities)} batches, "
                            f"not on this pipeline's modality '{modality}'")
    implied = {m for step in steps for m in step.modalities if len(step.modalities) == 1}
    if len(implied) > 1:
        raise SpecError(f"pipeline: steps for different modalities ({', '.join(sorted(implied))}) "
                        "cannot share a pipeline")
    return modality or (implied.pop() if implied else None)


def _as_batch(x: Any, modality: str | None, reads_pixels: Step | None = None) -> tuple[torch.Tensor, str]:
    """Check the batch against the pipeline's modality; return it and the modality it runs as.
    ``reads_pixels``: the first step that takes float pixels as 0..1, if any (float images are refused
    outside that range only then: geometry, erasing and mixing work on normalized batches too)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x: expected a torch.Tensor or numpy array, or a list of encoded images (bytes), "
                         f"got {type(x).__name__}")
    ranks = Modality(modality).ranks if modality else (3, 4)
    if x.dim() not in ranks:
        layout = Modality(modality).layout if modality else "(B, C, H, W) images or (B, C, T) sequences"
        hint = "; grayscale without a channel axis? x[:, None]" if x.dim() == 3 and modality == Modality.IMAGE else ""
        if x.dim() == 2 and modality is None:  # rank 2 is a table (B, F) or a waveform (B, T): the pipeline says
            hint = "; a table (B, F)? declare modality: tabular (a waveform (B, T): modality: waveform)"
        raise ValueError(f"x: expected shape {layout}, got rank {x.dim()} shape {tuple(x.shape)}{hint}")
    runs_as = modality or ("image" if x.dim() == 4 else "timeseries")
    if x.dtype not in INPUT_DTYPES:
        raise ValueError(f"x: expected dtype uint8, float16, float32 or float64, got {x.dtype}")
    if x.dtype == torch.uint8 and runs_as != "image":
        raise ValueError(f"x: {runs_as} batches must be float, got uint8")
    if x.shape[0] == 0 or x.numel() == 0:
        raise ValueError(f"x: expected a non-empty batch, got shape {tuple(x.shape)}")
    if modality == Modality.IMAGE and x.shape[1] > 4 and x.shape[-1] in (1, 3, 4):
        raise ValueError(f"x: expected {Modality.IMAGE.layout} images, got shape {tuple(x.shape)}"
                         f"{layout_hint(tuple(x.shape))}")
    if x.is_floating_point():
        # One read pass, no allocation, one host read: NaN and infinity show in the extremes (aminmax
        # propagates NaN), and so does a batch off the 0..1 scale.
        low, high = torch.stack(torch.aminmax(x)).tolist()
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("x: expected finite values, got NaN or infinity")
        if runs_as == Modality.IMAGE and reads_pixels is not None and \
                not -UNIT_RANGE_SLACK <= low <= high <= 1 + UNIT_RANGE_SLACK:
            raise ValueError(f"x: float images are read as 0..1 by {reads_pixels.where}; got values in "
                             f"[{low:.3g}, {high:.3g}]: " + (
                                 "0..255 pixels? divide by 255 or pass them as uint8" if low >= -UNIT_RANGE_SLACK
                                 else "already normalized? augment before normalizing, or use only steps that "
                                 "do not read pixel values (geometry, erasing, mixing)"))
    return x, runs_as


def _as_lengths(lengths: Any, shape: tuple[int, ...], modality: str) -> torch.Tensor | None:
    """Each waveform's valid length, checked: (B,) int64 in [1, T]; None for whole rows."""
    if lengths is None:
        return None
    if modality != Modality.WAVEFORM:
        raise ValueError(f"lengths: only waveform batches have valid lengths, not {modality} ones "
                         "(leave lengths out, or start the pipeline with waveform steps)")
    lengths = torch.as_tensor(np.asarray(lengths) if isinstance(lengths, (list, tuple)) else lengths)
    if lengths.dtype not in (torch.int64, torch.int32) or lengths.shape != shape[:1]:
        raise ValueError(f"lengths: expected {shape[0]} integers (one valid length per sample), got "
                         f"{lengths.dtype} of shape {tuple(lengths.shape)}")
    low, high = torch.stack(torch.aminmax(lengths.to(torch.int64))).tolist()
    if low < 1 or high > shape[-1]:
        raise ValueError(f"lengths: each must lie in [1, {shape[-1]}] (the batch's last axis), got values in "
                         f"[{low}, {high}]")
    return lengths.to(device="cpu", dtype=torch.int64)


def as_keys(keys: Any, batch: int, device: torch.device) -> torch.Tensor:
    """Each sample's key (default: its position), checked."""
    if keys is None:
        return torch.arange(batch, dtype=torch.int64, device=device)
    keys = torch.as_tensor(keys, device=device)
    if keys.dtype not in (torch.int64, torch.int32) or keys.shape != (batch,):
        raise ValueError(f"keys: expected a 1-D int64 tensor of length {batch}, got {keys.dtype} "
                         f"of shape {tuple(keys.shape)}")
    return keys.to(torch.int64)


def _on(seed: int | torch.Tensor, device: torch.device) -> int | torch.Tensor:
    """Per-sample seeds where the draws are made (an int is the same everywhere)."""
    return seed.to(device) if isinstance(seed, torch.Tensor) else seed


def _as_out_dtype(out_dtype: Any) -> torch.dtype | None:
    if out_dtype is None or out_dtype in OUT_DTYPES.values():
        return out_dtype
    if out_dtype in OUT_DTYPES:
        return OUT_DTYPES[out_dtype]
    raise ValueError(f"out_dtype: expected one of {', '.join(OUT_DTYPES)}, got {out_dtype!r}")


class Pipeline:
    """A compiled, validated sequence of steps; call it on a batch.

    ``modality`` (image, spectrogram, timeseries, waveform, tabular) is what the batches are; it is
    implied by modality-specific steps and may be left out when every step works
    on all of them (mixing, smoothing), in which case rank 4 means images.
    ``execution`` picks the plan (``EXECUTIONS``); both give the same bits.
    """

    def __init__(self, steps: list[Step], modality: str | None = None, execution: str = "auto",
                 text: text_run.TextOptions | None = None):
        if modality is not None and modality not in list(Modality):
            raise SpecError(f"pipeline: field 'modality': expected one of {', '.join(Modality)}, got {shown(modality)}"
                            f"{did_you_mean(modality, list(Modality))}")
        if execution not in EXECUTIONS:
            raise SpecError(f"execution: expected one of {', '.join(EXECUTIONS)}, got {execution!r}")
        self.execution = execution
        converters = [step for step in steps if step.produces]
        if len(converters) > 1:
            raise SpecError(f"{converters[1].where}: turns {converters[1].modalities[0]} batches into "
                            f"{converters[1].produces} ones, and {converters[0].where} already did: a pipeline "
                            "converts once")
        if converters:
            converter = converters[0]
            at = steps.index(converter)
            if modality not in (None, converter.modalities[0]):
                raise SpecError(f"{converter.where}: takes {converter.modalities[0]} batches, not this pipeline's "
                                f"modality '{modality}'")
            _single_modality(steps[:at], converter.modalities[0])
            _single_modality(steps[at + 1:], converter.produces)
            self.modality = converter.modalities[0]
            self.stages = [self.modality] * (at + 1) + [converter.produces] * (len(steps) - at - 1)
        else:
            self.modality = _single_modality(steps, modality)
            self.stages = [self.modality] * len(steps)  # None: generic steps only, decided per batch
        smoothing = [step.where for step in steps if isinstance(step, LabelSmoothing)]
        if len(smoothing) > 1:
            raise SpecError(f"pipeline: label smoothing appears {len(smoothing)} times ({', '.join(smoothing)}); "
                            "expected at most once")
        if text is not None and self.modality != Modality.TEXT:
            raise SpecError(f"pipeline: fields {', '.join(text_run.OPTIONS)} are for text pipelines, not "
                            f"{self.modality or 'generic'} ones")
        if self.modality == Modality.TEXT:
            text_run.check_order(steps)
        self.text = text or text_run.TextOptions()  # how a text pipeline reads sentences
        self.steps = steps
        self.strength = 1.0  # what ``at_strength`` scaled the steps by
        self.normalizes = any(isinstance(s, Normalize) for s in steps)
        self.reads_pixels = next((step for step in steps if step.reads_unit_range), None)  # see ``_as_batch``
        self.deferred: Normalize | None = None  # the normalize a caller runs after this pipeline: checked here
        self._before_normalize: Pipeline | None = None
        keep_freed_memory()  # once per process: without it every fresh batch buffer costs page faults

    @classmethod
    def from_spec(cls, spec: Any, execution: str = "auto") -> "Pipeline":
        """Preset name, timm string, list of step dicts, {'steps': [...]}, JSON/YAML text or a file path.
        ``execution``: "auto", "grouped" or "device" (see ``EXECUTIONS``)."""
        if isinstance(spec, Pipeline):
            return spec if execution == spec.execution else spec.with_execution(execution)
        steps, modality, text = _split_spec(_spec_data(spec))
        return cls(compile_steps(steps), modality, execution, text)

    def with_execution(self, execution: str) -> "Pipeline":
        """The same steps run with another plan."""
        other = Pipeline(self.steps, self.modality, execution, self._text_options())
        other.strength, other.reads_pixels, other.deferred = self.strength, self.reads_pixels, self.deferred
        return other

    def plan_for(self, device: torch.device) -> str:
        """The plan a batch on ``device`` runs: "grouped" or "device" (text has one plan: grouped, ``_text_call``)."""
        if self.modality == Modality.TEXT:
            return "grouped"
        if self.execution != "auto":
            return self.execution
        return "grouped" if device.type == "cpu" else "device"

    def at_strength(self, strength: float) -> "Pipeline":
        """This pipeline with every step's magnitudes scaled by ``strength`` in [0, MAX_STRENGTH]:
        0 leaves every sample as it came, 1 is the pipeline itself. Steps draw from the same streams
        at any strength, so a sample replays from (seed, key, strength)."""
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or \
                not 0.0 <= strength <= MAX_STRENGTH:
            raise SpecError(f"strength: expected a number in [0, {MAX_STRENGTH:g}], got {shown(strength)}")
        if strength == 1:
            return self
        scaled = Pipeline([step.at_strength(float(strength)) for step in self.steps], self.modality, self.execution,
                          self._text_options())
        scaled.strength = float(strength)
        return scaled

    def _text_options(self) -> text_run.TextOptions | None:
        return self.text if self.modality == Modality.TEXT else None

    def to_spec(self) -> dict[str, Any]:
        """The canonical spec: the modality, how text is read (text pipelines) and every step with its defaults."""
        text = self._text_options()
        options = {} if text is None else {"tokenizer": text.tokenizer, "max_words": text.max_words,
                                           **({"vocabulary": text.vocabulary} if text.vocabulary else {})}
        return {"modality": self.modality, **options, "steps": [step.to_dict() for step in self.steps]}

    def __repr__(self) -> str:
        return f"Pipeline({[s.op for s in self.steps]})"

    def deferring_normalize(self) -> tuple["Pipeline", Normalize | None]:
        """This pipeline without its final normalize step, and that step, for a caller that normalizes after
        its copy (uint8 on the wire); itself and None when it does not end in one. The other steps draw
        exactly as before: a step's random streams follow its position, and normalize draws nothing."""
        if len(self.steps) < 2 or not isinstance(self.steps[-1], Normalize):
            return self, None
        if self._before_normalize is None:
            before = Pipeline(self.steps[:-1], self.modality, self.execution)
            # the batch is refused as the whole pipeline would refuse it, before any work
            before.reads_pixels, before.deferred = self.reads_pixels, self.steps[-1]
            self._before_normalize = before
        return self._before_normalize, self.steps[-1]

    def first_steps(self) -> int:
        """How many leading steps bring encoded images of any size to one size (ValueError if none do)."""
        if self.modality not in (None, Modality.IMAGE):
            raise ValueError(f"encoded images: this pipeline is for {self.modality} batches, not images")
        return first_steps.count(self.steps)

    def prepare(self, images: Any, *, seed: int | torch.Tensor = 0, keys: Any = None) -> Prepared:
        """Decode encoded images and run the first steps: the half of a call that needs no device batch."""
        encoded = images if isinstance(images, EncodedBatch) else EncodedBatch(images)
        start = self.first_steps()
        host = device_plan.HOST  # boxes drawn on the host are the CPU's on any device (log, exp, sqrt differ on a GPU)
        rng = SampleRng(_on(seed, host), as_keys(keys, len(encoded), host))
        x, drawn = first_steps.run(self.steps[:start], encoded, rng)
        return Prepared(x, drawn)

    def _out_dtype(self, out_dtype: Any) -> torch.dtype | None:
        requested = _as_out_dtype(out_dtype)
        if requested == torch.uint8 and self.normalizes:
            raise ValueError("out_dtype: uint8 cannot hold normalized values; use float16 or float32")
        return requested

    def check(self, x: Any, out_dtype: Any = None, lengths: Any = None) -> "Checked":
        """Raise ValueError for a batch this pipeline would refuse, without running it; else the batch as
        accepted, with the shape and dtype it will return (so callers can bound the output before any work).

        ``x`` is a dense batch or encoded images (an ``EncodedBatch`` or a list of file bytes); ``lengths``
        each waveform's valid length (B,), the rest of its row padding. Calling the pipeline on what this
        returns checks nothing again (a float batch is scanned for NaN once). A text pipeline takes what
        ``_text_call`` takes and returns it tokenized (``shape`` (B,), ``dtype`` None: sentences).
        """
        if self.modality == Modality.TEXT:
            return self._check_text(x, out_dtype, lengths)
        requested = self._out_dtype(out_dtype)
        convert = requested
        encoded = _as_encoded(x)
        if encoded is not None:
            x, start, runs_as = encoded, self.first_steps(), Modality.IMAGE
            shape, dtype = first_steps.output(self.steps[:start], encoded)
            in_dtype = dtype
        elif isinstance(x, Prepared):
            start, shape, dtype, runs_as = len(x.params), tuple(x.x.shape), x.x.dtype, Modality.IMAGE
            in_dtype = dtype
        else:
            x, runs_as = _as_batch(x, self.modality, self.reads_pixels)
            lengths = _as_lengths(lengths, tuple(x.shape), runs_as)
            start, shape, in_dtype = 0, tuple(x.shape), x.dtype
            dtype = torch.float32 if x.is_floating_point() else x.dtype  # float batches run as float32
            if convert is None and x.is_floating_point():
                convert = x.dtype  # float16/64 inputs are processed in float32 and handed back as they came
        for step in self.steps[start:]:
            shape, dtype = step.check_shape(shape, dtype)
        if self.deferred is not None:
            self.deferred.check_shape(shape, dtype)
        if requested is None and in_dtype.is_floating_point:
            dtype = in_dtype  # float inputs are handed back as they came
        if lengths is not None and (encoded is not None or isinstance(x, Prepared)):
            raise ValueError("lengths: only waveform batches have valid lengths, not images")
        return Checked(self, x, convert, shape, dtype if requested is None else requested, runs_as, lengths)

    def _check_text(self, x: Any, out_dtype: Any, lengths: Any) -> "Checked":
        """Sentences tokenized (their words counted) or word ids checked: what a server bounds before it queues."""
        if out_dtype is not None:
            raise ValueError("out_dtype: text pipelines return sentences (or word ids); leave out_dtype out")
        batch = x if isinstance(x, text_run.TextBatch) else self.text.encode(x, lengths=lengths)
        return Checked(self, batch, None, (len(batch),), None, Modality.TEXT)

    def __call__(self, x: Any, labels: Any = None, *, seed: int | torch.Tensor = 0, keys: Any = None,
                 num_classes: int | None = None, out_dtype: Any = None, lengths: Any = None,
                 reports: bool = True) -> AugmentOutput:
        """Augment a batch; each sample's draws depend only on (seed, its key).

        ``x`` is a dense batch ((B, C, H, W) images, spectrograms, series, (B, [C,] T) waveforms) or encoded
        images of any sizes (an ``EncodedBatch``, decoded on its device, or a list of JPEG/PNG/WebP file
        bytes), or what ``prepare`` made of them with the same seed and keys, or what ``check`` returned.
        ``lengths``: each waveform's valid length (the rest of its row is padding, and stays zero); the
        output's ``lengths`` are the valid lengths after the steps (in frames after ``log_mel``).
        ``reports=False``: text steps leave the words they changed out of ``params`` (their counts stay); building
        those lists is a large part of a call on word ids, wasted where nobody reads them.
        """
        if self.modality == Modality.TEXT:
            return self._text_call(x, labels, seed, keys, num_classes, out_dtype, lengths, reports)
        checked, x, prepared, start = self._begin(x, out_dtype, seed, keys, lengths)
        device, size = x.device, x.shape[0]
        if self.plan_for(device) == "device":
            call = self._device_call(checked, x, prepared, start, labels, seed, keys, num_classes)
            labels_on = None if call.labels is None else call.labels.to(device, non_blocking=True)
            out_x, out_labels = call.run(x, labels_on, call.packed.host.to(device, non_blocking=True))
            return AugmentOutput(out_x, out_labels, call.params, call.lengths)
        rng = SampleRng(seed, as_keys(keys, size, device))
        lengths = None if checked.lengths is None else checked.lengths.to(device)
        soft = None if labels is None else as_soft_labels(labels, size, num_classes, device)
        params = []
        if prepared is not None:
            for step, step_params in zip(self.steps[:start], prepared.params):
                soft = None if soft is None else step.relabel(soft, step_params)
                params.append({"op": step.op, **public(step_params)})
        for slot, (step, stage) in enumerate(zip(self.steps, self.stages)):
            if slot >= start:
                x, soft, drawn = step.run(x, soft, rng.fork(slot), stage or checked.modality, lengths)
                lengths = drawn.get(LENGTHS, lengths)
                params.append({"op": step.op, **drawn})
        return AugmentOutput(to_out_dtype(x, checked.out_dtype), soft, params, lengths)

    def _text_call(self, x: Any, labels: Any, seed: int | torch.Tensor, keys: Any, num_classes: int | None,
                   out_dtype: Any, lengths: Any, reports: bool) -> AugmentOutput:
        """Sentences (a list of str, word ids of the spec's vocabulary with their ``lengths``, what
        ``self.text.encode`` made of either, or what ``check`` returned) through the text steps: the same batched
        edits on any device, so text has one plan."""
        batch = self._checked(x, out_dtype, lengths).x
        keys = as_keys(keys, len(batch), batch.ids.device)
        return AugmentOutput(*text_run.run(self.steps, self.text, batch, labels, seed, keys, num_classes, reports))

    def device_call(self, x: Any, labels: Any = None, *, seed: int | torch.Tensor = 0, keys: Any = None,
                    num_classes: int | None = None, out_dtype: Any = None, lengths: Any = None) -> device_plan.Call:
        """The device plan's call in two halves: what the host works out now (checks, soft labels, every draw
        packed in one buffer) and ``Call.run`` for the device, which a CUDA graph can capture and replay.
        Takes what ``__call__`` takes; keys, seeds, labels and lengths are read on the host."""
        checked, x, prepared, start = self._begin(x, out_dtype, seed, keys, lengths)
        return self._device_call(checked, x, prepared, start, labels, seed, keys, num_classes)

    def _begin(self, x: Any, out_dtype: Any, seed: int | torch.Tensor, keys: Any,
               lengths: Any = None) -> tuple["Checked", torch.Tensor, Prepared | None, int]:
        """The checked batch, the dense batch the steps start from, what its first steps drew (encoded images)
        and how many steps that was."""
        checked = self._checked(x, out_dtype, lengths)
        x = checked.x
        if isinstance(x, EncodedBatch):
            x = self.prepare(x, seed=seed, keys=keys)
        if isinstance(x, Prepared):
            return checked, x.x, x, len(x.params)
        return checked, x.to(torch.float32) if x.is_floating_point() else x, None, 0

    def _checked(self, x: Any, out_dtype: Any, lengths: Any) -> "Checked":
        """``x`` as ``check`` accepts it; a batch it returned already passes as it is."""
        if not isinstance(x, Checked):
            return self.check(x, out_dtype, lengths)
        if x.pipeline is not self:
            raise ValueError("x: checked by another pipeline; check it with this one")
        for name, value in (("out_dtype", out_dtype), ("lengths", lengths)):
            if value is not None:
                raise ValueError(f"{name}: a checked batch carries its own (give {name} to check)")
        return x

    def _device_call(self, checked: "Checked", x: torch.Tensor, prepared: Prepared | None, start: int, labels: Any,
                     seed: int | torch.Tensor, keys: Any, num_classes: int | None) -> device_plan.Call:
        host, size = device_plan.HOST, x.shape[0]
        rng = SampleRng(_on(seed, host), as_keys(keys, size, host))
        soft = None if labels is None else as_soft_labels(labels, size, num_classes, host)
        params = [] if prepared is None else [{"op": step.op, **public(drawn)}
                                             for step, drawn in zip(self.steps[:start], prepared.params)]
        lengths = None if checked.lengths is None else checked.lengths.to(host)
        drawn = device_plan.draw(self.steps, self.stages, start, tuple(x.shape), x.dtype, rng, checked.modality,
                                 lengths)
        params += [{"op": step.op, **public(step_params)} for step, step_params in zip(self.steps[start:], drawn)]
        for step_params in drawn:
            lengths = step_params.get(LENGTHS, lengths)
        packed = packing.pack(drawn, pin=x.is_cuda and torch.cuda.is_available())
        return device_plan.Call(self.steps[start:], x, soft, packed, params, checked.out_dtype, lengths)


@dataclass(frozen=True)
class Checked:
    """A batch a pipeline accepted (``Pipeline.check``) and what the pipeline will return for it."""

    pipeline: Pipeline
    x: torch.Tensor | EncodedBatch | Prepared | text_run.TextBatch
    out_dtype: torch.dtype | None  # what the result is converted to (None: as the steps leave it)
    shape: tuple[int, ...]  # of the result
    dtype: torch.dtype | None  # of the result (None: sentences)
    modality: str  # what the batch runs as
    lengths: torch.Tensor | None = None  # (B,) int64 valid lengths of a waveform batch; None: every row is whole

    def __len__(self) -> int:
        return self.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Checked":
        return replace(self, x=self.x.to(device, non_blocking=non_blocking))

    def with_input(self, x: Prepared) -> "Checked":
        """The same batch after ``Pipeline.prepare`` ran its first steps (decoding ahead of the device)."""
        return replace(self, x=x)

    @staticmethod
    def concat(parts: list["Checked"]) -> "Checked":
        """Batches checked by one pipeline with one output dtype, as one (dense, encoded or prepared: never mixed)."""
        inputs = [part.x for part in parts]
        x = torch.cat(inputs) if isinstance(inputs[0], torch.Tensor) else type(inputs[0]).concat(inputs)
        first = parts[0]
        lengths = None
        if any(part.lengths is not None for part in parts):
            lengths = torch.cat([torch.full((len(part.x),), part.x.shape[-1], dtype=torch.int64)
                                 if part.lengths is None else part.lengths for part in parts])
        return replace(first, x=x, shape=(sum(len(part) for part in parts), *first.shape[1:]), lengths=lengths)


def _as_encoded(x: Any) -> EncodedBatch | None:
    """Encoded images as a checked batch; None for a dense batch."""
    if isinstance(x, EncodedBatch):
        return x
    if isinstance(x, (list, tuple)) and x and all(map(is_encoded_image, x)):
        return EncodedBatch(x)
    return None
