"""Golden replay: what a recorded (seed, key) produces is pinned, for every op and every preset.

A user who logged ``(seed, key)`` of a sample expects the same augmentation from the next
version. These tests hold fixed values recorded from the engine (drawn parameters, a sample of
output values, exact bytes for uint8 outputs) so that any change to them fails the suite, however
it came about: a renumbered draw, a new op in a policy's op space, a refactor of a kernel.

Re-record only for an intended, announced change: ``python tests/test_golden_replay.py --record``
(``--record new`` records only cases that have no record yet, such as a new op's).
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import sys

import pytest
import torch

from augserve import PRESETS, Pipeline, sound_sets, table_stats
from augserve.text import paraphrases
from augserve.steps import STEPS
from conftest import needs_wordnet

GOLDEN = pathlib.Path(__file__).with_name("golden") / "replay.json"
SEEDS_AND_KEYS = [(0, [0, 1, 2, 3]), ((1 << 63) + 5, [7, 1 << 40, 3, 99])]
VALUES_KEPT = 48  # output values recorded per case, at fixed strided positions

# One spec per op, with non-default fields where they change what is drawn.
OP_SPECS = {
    "random_resized_crop": {"size": [24, 20]}, "resize": {"size": 20}, "center_crop": {"size": 24},
    "random_crop": {"size": 24, "padding": 4}, "hflip": {}, "vflip": {},
    "random_affine": {"degrees": 20, "translate": [0.1, 0.2], "scale": [0.8, 1.2], "shear": 10, "shear_y": 5},
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "p": 0.8},
    "grayscale": {"p": 0.5}, "posterize": {"bits": 3}, "solarize": {"threshold": 0.6}, "sharpness": {"factor": 3.0},
    "equalize": {}, "autocontrast": {}, "invert": {}, "gaussian_blur": {"kernel_size": 5, "sigma": [0.1, 2.0], "p": 0.8},
    "rand_augment": {"n": 2, "m": 9, "mstd": 0.5}, "trivial_augment": {}, "auto_augment": {"policy": "imagenet"},
    "augmix": {"severity": 4, "mixture_width": 2}, "timm_rand_augment": {"m": 9, "mstd": 0.5, "inc": True},
    "timm_auto_augment": {"policy": "original", "mstd": 0.5}, "timm_augmix": {"m": 5, "w": 4, "d": 2},
    "random_erasing": {"p": 0.9, "value": "random"}, "normalize": {"mean": [0.5], "std": [0.25]},
    "mix": {}, "mixup": {"alpha": 0.4}, "cutmix": {"alpha": 1.0}, "label_smoothing": {"epsilon": 0.1},
    "freq_mask": {"F": 8, "count": 2}, "time_mask": {"T": 10, "count": 2}, "spec_time_warp": {"W": 8},
    "log_mel": {"n_mels": 16, "n_fft": 128, "hop_length": 64},
    "jitter": {}, "scaling": {}, "magnitude_warp": {}, "time_warp": {}, "window_slice": {}, "window_warp": {},
    "window_warp_or_slice": {"p": 0.8},
    "permutation": {}, "drift": {},
    "gain": {"p": 0.8}, "polarity_inversion": {}, "background_noise": {"sounds": "replay-noise"}, "time_shift": {"rollover": False}, "noise": {"color": "pink"},
    "reverb": {"max_rt60": 0.3}, "lowpass": {}, "highpass": {}, "bandpass": {}, "speed": {"range": [0.8, 1.2]},
    "time_stretch": {}, "pitch_shift": {"p": 0.9},
    "feature_noise": {"stats": "replay-table", "p": 0.8}, "feature_mask": {"fill": "mean", "stats": "replay-table"},
    "swap_noise": {"p": 0.3},
}
# Text steps: sentences in, sentences out (tests/test_text_steps.py holds them to the step contract).
TEXT_OP_SPECS = {"synonym_replacement": {"alpha": 0.2}, "random_insertion": {"alpha": 0.2},
                 "random_swap": {"alpha": 0.2}, "random_deletion": {"p": 0.2}, "eda": {},
                 "back_translation": {"p": 0.5}}
# Ops that read a model checkpoint: its floating-point forward pass may round otherwise on another CPU, so no
# recorded case pins them; tests/test_masked_lm.py holds their replay within a process instead.
MODEL_OPS = {"contextual_substitution"}
EXTRA_SPECS = {
    "timm rand-m9-n2-mstd0.5": "rand-m9-n2-mstd0.5",
    "timm rand-m7-n3-mstd101-tweights": "rand-m7-n3-mstd101-tweights",
    "timm augmix-m5-w4-b1": "augmix-m5-w4-b1",
    "timm 3a": "3a",
    "erasing with a per-channel value": [{"op": "random_erasing", "p": 1.0, "value": [10, 200, 30]}],
    "mix pair mode": [{"op": "mix", "mode": "pair"}],
    "auto_augment cifar10": [{"op": "auto_augment", "policy": "cifar10"}],
    "feature_mask marginal": [{"op": "feature_mask", "fill": "marginal", "p": 0.4, "categorical": [4]}],
    "feature_noise from the batch": [{"op": "feature_noise", "batch_stats": True, "sigma": 0.5, "categorical": [4, 5]}],
    "feature_noise std in the spec": [{"op": "feature_noise", "std": [1, 2, 0.5, 0, 1, 1], "p": 1.0}],
    "tabular mix": {"modality": "tabular", "steps": [{"op": "mix", "mixup_alpha": 0.4}, {"op": "label_smoothing"}]},
}


# the sound set background_noise reads in these cases: three clips, one shorter than the batch's samples
sound_sets.register("replay-noise", torch.randn(3, 1500, generator=torch.Generator().manual_seed(7)),
                    lengths=[1500, 700, 1100])


def _table(rows: int, generator: torch.Generator) -> torch.Tensor:
    """A small mixed table: four continuous columns on their own scales, then two of category codes (4, 5)."""
    continuous = torch.randn(rows, 4, generator=generator) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + 5.0
    codes = torch.stack([torch.randint(0, 3, (rows,), generator=generator),
                         torch.randint(0, 2, (rows,), generator=generator)], dim=1)
    return torch.cat([continuous, codes.float()], dim=1)


# the table whose column statistics feature_noise and feature_mask read in these cases
table_stats.register("replay-table", _table(64, torch.Generator().manual_seed(8)), categorical=(4, 5))


SENTENCES = ["The quick brown fox jumps over the lazy dog near the river bank.",
             "I love eating ice cream on a hot summer day!", "Hello", "Computers are fast; programmers are slow."]


# the round trips back_translation reads in these cases (a served dataset's paraphrase file, in effect)
paraphrases.add({paraphrases.key(s): f"{s} said once more in other words" for s in SENTENCES}, "the golden cases")


def _input(modality: str) -> torch.Tensor | list[str]:
    if modality == "text":
        return list(SENTENCES)
    generator = torch.Generator().manual_seed(20261125)
    if modality == "image":
        return torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=generator)
    if modality == "spectrogram":
        return torch.randn(4, 1, 32, 200, generator=generator)
    if modality == "waveform":
        return torch.randn(4, 1024, generator=generator)
    if modality == "tabular":
        return _table(4, generator)
    return torch.randn(4, 2, 60, generator=generator).cumsum(-1)


def cases() -> dict[str, object]:
    specs: dict[str, object] = {f"op {op}": [{"op": op, **spec}] for op, spec in {**OP_SPECS, **TEXT_OP_SPECS}.items()}
    specs.update({f"preset {name}": name for name in PRESETS})
    specs.update(EXTRA_SPECS)
    return specs


def _rounded(value):
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, float):
        return value if not math.isfinite(value) else float(f"{value:.6g}")
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def summarize(spec) -> list[dict]:
    """What each (seed, keys) gives: drawn params, output shape and dtype, sampled values, uint8 bytes."""
    pipe = Pipeline.from_spec(spec)
    x = _input(pipe.modality or "image")
    labels = torch.tensor([0, 1, 2, 1])
    records = []
    for seed, keys in SEEDS_AND_KEYS:
        out = pipe(x, labels, seed=seed, keys=torch.tensor(keys), num_classes=3)
        if isinstance(out.x, list):  # sentences
            records.append({"params": [{k: _rounded(v) for k, v in sorted(step.items())} for step in out.params],
                            "sentences": out.x, "labels": _rounded(out.labels)})
            continue
        flat = out.x.flatten().to(torch.float64)
        stride = max(1, flat.numel() // VALUES_KEPT)
        records.append({
            "params": [{k: _rounded(v) for k, v in sorted(step.items())} for step in out.params],
            "shape": list(out.x.shape), "dtype": str(out.x.dtype).removeprefix("torch."),
            "values": _rounded(flat[::stride][:VALUES_KEPT]),
            "sum": _rounded(float(flat.sum())),
            "labels": _rounded(out.labels),
            "sha256": hashlib.sha256(out.x.numpy().tobytes()).hexdigest() if out.x.dtype == torch.uint8 else None,
        })
    return records


def _close(recorded, now, path: str) -> None:
    if isinstance(recorded, list):
        assert isinstance(now, list) and len(now) == len(recorded), f"{path}: length {len(now)} != {len(recorded)}"
        for i, (a, b) in enumerate(zip(recorded, now)):
            _close(a, b, f"{path}[{i}]")
    elif isinstance(recorded, dict):
        assert isinstance(now, dict) and set(now) == set(recorded), f"{path}: keys {sorted(now)} != {sorted(recorded)}"
        for key in recorded:
            _close(recorded[key], now[key], f"{path}.{key}")
    elif isinstance(recorded, float) and isinstance(now, (int, float)):
        assert now == pytest.approx(recorded, rel=1e-4, abs=1e-4), f"{path}: {now} != {recorded}"
    else:
        assert now == recorded, f"{path}: {now!r} != {recorded!r}"


def test_every_op_has_a_golden_case():
    assert set(OP_SPECS) | set(TEXT_OP_SPECS) | MODEL_OPS == set(STEPS)


@pytest.mark.parametrize("name", [pytest.param(name, marks=needs_wordnet) if name.removeprefix("op ") in TEXT_OP_SPECS
                                  else name for name in sorted(cases())])
def test_recorded_samples_replay(name):
    recorded = json.loads(GOLDEN.read_text())
    assert name in recorded, f"no golden record for {name!r}: record it with --record"
    _close(recorded[name], json.loads(json.dumps(summarize(cases()[name]))), name)


if __name__ == "__main__" and "--record" in sys.argv:
    # --record: every case anew; --record new: only the cases not recorded yet (a new op), the rest kept as they are
    kept = json.loads(GOLDEN.read_text()) if "new" in sys.argv and GOLDEN.exists() else {}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({name: kept.get(name) or summarize(spec) for name, spec in sorted(cases().items())},
                                 indent=1) + "\n")
    print(f"wrote {GOLDEN}")
