"""Pipelines as data: a spec (preset, timm string, step list, JSON/YAML) -> a validated Pipeline.

>>> pipe = Pipeline.from_spec("imagenet-randaug")
>>> out = pipe(x, labels, seed=0, keys=keys, num_classes=1000)
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import yaml
from torchvision.transforms.v2 import functional as TF

from augserve.labels import as_soft_labels
from augserve.presets import PRESETS
from augserve.random import SampleRng
from augserve.spec import SpecError
from augserve.transforms import STEPS, Normalize, Step

INPUT_DTYPES = (torch.uint8, torch.float16, torch.float32, torch.float64)
OUT_DTYPES = {"uint8": torch.uint8, "float16": torch.float16, "float32": torch.float32}
_TIMM_KEYS = ("m", "n", "mstd", "mmax")


@dataclass
class AugmentOutput:
    """What a pipeline returns: the batch, soft labels, and per-step provenance."""

    x: torch.Tensor
    labels: torch.Tensor | None
    params: list[dict[str, Any]] = field(default_factory=list)


def parse_timm_rand(text: str) -> list[dict]:
    """``rand-m9-n2-mstd0.5`` -> a rand_augment step on timm's 0..10 magnitude scale.

    The op set and ranges stay torchvision's; only n, m, mstd and mmax are read.
    """
    step: dict[str, Any] = {"op": "rand_augment", "num_magnitude_bins": 11}
    for part in text.split("-")[1:]:
        match = re.fullmatch(r"([a-z]+)([0-9.]+|inf)", part)
        if not match or match.group(1) not in _TIMM_KEYS:
            raise SpecError(f"pipeline '{text}': unknown part '{part}' (known: {', '.join(_TIMM_KEYS)}, "
                            "as in rand-m9-n2-mstd0.5)")
        key, number = match.groups()
        try:
            value = float(number)
        except ValueError:
            raise SpecError(f"pipeline '{text}': part '{part}' has no number") from None
        step[key] = int(value) if key == "n" and value.is_integer() else value
    return [step]


def _steps_from_text(text: str) -> list[dict]:
    name = text.strip()
    if name in PRESETS:
        return PRESETS[name][1]
    if name.startswith("rand-") or name == "rand":
        return parse_timm_rand(name)
    if name[:1] in "[{" or "\n" in name:
        try:
            return _steps_from_data(yaml.safe_load(name))
        except yaml.YAMLError as error:
            raise SpecError(f"pipeline: not valid JSON or YAML: {error}") from None
    raise SpecError(f"pipeline: unknown preset '{name}' (presets: {', '.join(PRESETS)}; "
                    "or a timm string like rand-m9-n2-mstd0.5, or a list of steps)")


def _steps_from_data(spec: Any) -> list[dict]:
    if isinstance(spec, dict) and "steps" in spec:
        spec = spec["steps"]
    elif isinstance(spec, dict):
        spec = [spec]
    if isinstance(spec, str):
        return _steps_from_text(spec)
    if not isinstance(spec, (list, tuple)):
        raise SpecError(f"pipeline: expected a preset name, a list of steps or {{'steps': [...]}}, "
                        f"got {type(spec).__name__}")
    return list(spec)


def compile_steps(step_dicts: list[Any]) -> list[Step]:
    if not step_dicts:
        raise SpecError("pipeline: expected at least one step, got none")
    steps = []
    for index, raw in enumerate(step_dicts):
        if not isinstance(raw, dict):
            raise SpecError(f"step {index}: expected a mapping like {{'op': 'hflip'}}, got {raw!r}")
        options = dict(raw)
        op = options.pop("op", None)
        if op not in STEPS:
            raise SpecError(f"step {index}: field 'op': unknown op {op!r} (known: {', '.join(sorted(STEPS))})")
        steps.append(STEPS[op](f"step {index} ({op})", **options))
    return steps


def _as_batch(x: Any) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x: expected a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x: expected shape (B, C, H, W), got rank {x.dim()} shape {tuple(x.shape)}")
    if x.dtype not in INPUT_DTYPES:
        raise ValueError(f"x: expected dtype uint8, float16, float32 or float64, got {x.dtype}")
    if x.shape[0] == 0 or x.numel() == 0:
        raise ValueError(f"x: expected a non-empty batch, got shape {tuple(x.shape)}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError("x: float input contains NaN or infinity")
    return x


def _as_keys(keys: Any, batch: int, device: torch.device) -> torch.Tensor:
    if keys is None:
        return torch.arange(batch, dtype=torch.int64, device=device)
    keys = torch.as_tensor(keys, device=device)
    if keys.dtype not in (torch.int64, torch.int32) or keys.shape != (batch,):
        raise ValueError(f"keys: expected a 1-D int64 tensor of length {batch}, got {keys.dtype} "
                         f"of shape {tuple(keys.shape)}")
    return keys.to(torch.int64)


def _as_out_dtype(out_dtype: Any) -> torch.dtype | None:
    if out_dtype is None or out_dtype in OUT_DTYPES.values():
        return out_dtype
    if out_dtype in OUT_DTYPES:
        return OUT_DTYPES[out_dtype]
    raise ValueError(f"out_dtype: expected one of {', '.join(OUT_DTYPES)}, got {out_dtype!r}")


class Pipeline:
    """A compiled, validated sequence of steps; call it on a batch."""

    def __init__(self, steps: list[Step]):
        self.steps = steps
        self.normalizes = any(isinstance(s, Normalize) for s in steps)

    @classmethod
    def from_spec(cls, spec: Any) -> "Pipeline":
        """Preset name, timm string, list of step dicts, {'steps': [...]}, JSON/YAML text or a file path."""
        if isinstance(spec, Pipeline):
            return spec
        if isinstance(spec, pathlib.Path):
            try:
                spec = yaml.safe_load(spec.read_text())
            except (OSError, yaml.YAMLError) as error:
                raise SpecError(f"pipeline file {spec}: {error}") from None
        steps = _steps_from_text(spec) if isinstance(spec, str) else _steps_from_data(spec)
        return cls(compile_steps(steps))

    def to_spec(self) -> list[dict[str, Any]]:
        """The canonical step list, every default filled in."""
        return [step.to_dict() for step in self.steps]

    def __repr__(self) -> str:
        return f"Pipeline({[s.op for s in self.steps]})"

    def __call__(self, x: Any, labels: Any = None, *, seed: int = 0, keys: Any = None,
                 num_classes: int | None = None, out_dtype: Any = None) -> AugmentOutput:
        """Augment a (B, C, H, W) batch; each sample's draws depend only on (seed, its key)."""
        x = _as_batch(x)
        out_dtype = _as_out_dtype(out_dtype)
        if out_dtype is None and x.is_floating_point():
            out_dtype = x.dtype  # float16/64 inputs are processed in float32 and handed back as they came
        if out_dtype == torch.uint8 and self.normalizes:
            raise ValueError("out_dtype: uint8 cannot hold normalized values; use float16 or float32")
        keys = _as_keys(keys, x.shape[0], x.device)
        rng = SampleRng(seed, keys)
        if x.is_floating_point():
            x = x.to(torch.float32)
        soft = None if labels is None else as_soft_labels(labels, x.shape[0], num_classes, x.device)

        params = []
        for slot, step in enumerate(self.steps):
            step.check_input(x)
            x, drawn = step(x, rng.fork(slot))
            params.append({"op": step.op, **drawn})
        return AugmentOutput(_convert(x, out_dtype), soft, params)


def _convert(x: torch.Tensor, out_dtype: torch.dtype | None) -> torch.Tensor:
    if out_dtype is None or x.dtype == out_dtype:
        return x
    if x.dtype == torch.uint8 or out_dtype == torch.uint8:
        return TF.to_dtype(x, out_dtype, scale=True)
    return x.to(out_dtype)

