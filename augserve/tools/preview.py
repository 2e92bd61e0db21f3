"""Preview grids: each original beside augmented versions, each tile captioned with what its sample drew.

A grid of keys 0, 1, 2, ... can miss a step: 20 tiles of ``imagenet-randaug`` erase none in about one
grid of 300 (seed 0 is one). So the tiles' keys are chosen: a step draws from (seed, key, batch shape)
only, never from pixels, so the draws of up to ``SEARCHED_KEYS`` candidate keys are made as one batch
without touching an image, and
a greedy cover picks keys until every step, and every op of a policy step, is applied in some tile.
The grid then runs on its samples, and its own params decide what the title reports as shown.
"""

from __future__ import annotations

import math
import pathlib
import textwrap
from dataclasses import dataclass, field

import numpy as np
import torch

from augserve.encoded import EncodedBatch, first_steps
from augserve.extras import require
from augserve.modality import Modality
from augserve.photos import load_images, read_image_files
from augserve.pipeline import Pipeline
from augserve.random import SampleRng
from augserve.steps import Normalize
from augserve.steps.base import Batch

SEARCHED_KEYS = 10_000  # candidate keys at most; drawn in chunks, stopping once every effect has a key
_CHUNK = 2_000
_PROBE = 64  # keys drawn first to tell steps applied to some samples from steps applied to all
_SHORT = {"hflip": "flip", "vflip": "vertical flip", "random_erasing": "erase"}
_MASK_UNITS = {"freq_mask": "bins", "time_mask": "frames"}

Target = tuple[int, str | None]  # (step slot, op of a policy step or None for the step itself)


# --- what a sample drew --------------------------------------------------------------------------------

def _effects(step: dict, count: int) -> dict[str | None, torch.Tensor] | None:
    """Which samples show a step's effect: {None: bool per sample} for the step, or {op: bool per sample} for
    each op a policy step may choose; None for a step applied to every sample (crops, resizes, noise,
    normalize: nothing to search for)."""
    if "space" in step:
        ops = step["ops"].reshape(count, -1)
        return {name: (ops == k).any(1) for k, name in enumerate(step["space"]) if name != "identity"}
    if "mixed" in step:
        return {None: step["mixed"].bool()}
    if "applied" in step:
        return {None: step["applied"].bool()}
    if "width" in step and "start" in step:  # SpecAugment masks: a zero-width mask masks nothing
        return {None: step["width"].reshape(count, -1).sum(1) > 0}
    if "distance" in step:
        return {None: step["distance"] != 0}
    return None


_WAVE_WORDS = {  # a waveform step's drawn values, from its reported params (one sample's row)
    "gain": lambda p: f"gain {p['gain_db']:+.1f} dB",
    "polarity_inversion": lambda p: "polarity inverted",
    "time_shift": lambda p: f"shift {p['shift']:+,} samples",
    "noise": lambda p: f"noise at {p['snr_db']:.0f} dB SNR",
    "background_noise": lambda p: f"background #{p['noise_index']} at {p['snr_db']:.0f} dB SNR",
    "reverb": lambda p: f"reverb rt60 {p['rt60']:.2f} s" if "rt60" in p else f"reverb response #{p['ir_index']}",
    "lowpass": lambda p: f"lowpass {p['cutoff_hz']:,.0f} Hz",
    "highpass": lambda p: f"highpass {p['cutoff_hz']:,.0f} Hz",
    "bandpass": lambda p: f"bandpass {p['center_hz']:,.0f} Hz x{p['bandwidth']:.2f} wide",
    "speed": lambda p: f"speed x{p['factor']:.2f}",
    "time_stretch": lambda p: f"time stretch x{p['rate']:.2f}",
    "pitch_shift": lambda p: f"pitch {p['semitones']:+.1f} semitones",
}


def _value(value: float) -> str:
    """A policy op's drawn magnitude, short; nothing for ops without one (drawn as 0)."""
    return f"{value:.2g}" if value else ""


def _describe(step: dict, count: int) -> list[str]:
    """A few words per sample for what this step drew ("" where it drew nothing worth a word)."""
    op = step["op"]
    if "space" in step:
        space, texts = step["space"], []
        for row, values in zip(step["ops"].reshape(count, -1).tolist(), step["values"].reshape(count, -1).tolist()):
            named = [(space[k], v) for k, v in zip(row, values) if k >= 0 and space[k] != "identity"]
            if len(named) > 3:  # AugMix's chains: the ops, once each
                texts.append(f"{op}: " + "+".join(dict.fromkeys(name for name, _ in named)))
            else:
                texts.append(" + ".join(f"{name} {_value(v)}".strip() for name, v in named))
        return texts
    if "mixed" in step:
        return [f"{'cutmix' if cut else 'mixup'} λ={lam:.2f}" if mixed else ""
                for mixed, cut, lam in zip(step["mixed"].tolist(), step["cutmix"].tolist(), step["lam"].tolist())]
    if "applied" in step:
        words = _WAVE_WORDS.get(op)
        if words is not None:  # a waveform step: its drawn values
            columns = {name: value.tolist() for name, value in step.items()
                       if isinstance(value, torch.Tensor) and value.dim() and len(value) == count}
            rows = [{name: column[i] for name, column in columns.items()} for i in range(count)]
            return [words(row) if row["applied"] else "" for row in rows]
        return [_SHORT.get(op, op) if hit else "" for hit in step["applied"].tolist()]
    if "width" in step and "start" in step:
        unit = _MASK_UNITS.get(op, "")
        return [f"{op.replace('_', ' ')} {w} {unit}".strip() if w else ""
                for w in step["width"].reshape(count, -1).sum(1).tolist()]
    if "distance" in step:
        return [f"time warp {d:+.0f} frames" if d else "" for d in step["distance"].tolist()]
    if op == "window_warp":
        return [f"window warp x{s:.2f}" for s in step["scale"].tolist()]
    if "factor" in step:
        return [f"scaling x{f:.2f}" for f in step["factor"].reshape(count, -1).mean(1).tolist()]
    if "knots" in step:
        return [f"magnitude warp ±{k:.2f}" for k in (step["knots"].reshape(count, -1) - 1).abs().amax(1).tolist()]
    if "positions" in step:
        shift = (step["positions"] - torch.arange(step["positions"].shape[-1])).abs().amax(-1)
        return [f"time warp ±{s:.1f} steps" for s in shift.tolist()]
    if "angle" in step:
        return [f"affine {a:+.0f}° x{s:.2f}" for a, s in zip(step["angle"].tolist(), step["scale"].tolist())]
    if "segments" in step:
        return [f"permutation {n} segments" for n in step["segments"].tolist()]
    if op == "window_slice":
        return [f"window slice at {s}" for s in step["start"].tolist()]
    if "amount" in step:
        return [f"drift ±{a:.2f}" for a in step["amount"].reshape(count, -1).abs().amax(1).tolist()]
    return [""] * count


def captions(params: list[dict], count: int, nothing: str = "only the every-tile steps") -> list[str]:
    """Per sample, what it drew from the steps that differ per sample (the ops applied, with values);
    ``nothing`` where it drew none."""
    parts = [[] for _ in range(count)]
    for step in params:
        for i, text in enumerate(_describe(step, count)):
            if text:
                parts[i].append(text)
    return [", ".join(words) or nothing for words in parts]


# --- choosing the keys ---------------------------------------------------------------------------------

@dataclass
class KeyChoice:
    """The tiles' keys (row by row) and what the search found: targets, the steps applied to every sample
    (nothing to search for), the targets no searched key draws and those the chosen keys draw."""

    keys: torch.Tensor
    targets: list[Target]
    every_tile: list[int]  # slots
    never: list[Target]
    expected: list[Target]
    searched: int


def _draws(pipe: Pipeline, slots: list[int], shapes: list, seed: int, keys: torch.Tensor) -> dict[int, dict]:
    """The public draws of steps ``slots`` for ``keys``, as a pipeline call on a batch of that many samples
    would make them (each step draws from its own stream, so any subset can be drawn)."""
    rng = SampleRng(seed, keys)
    drawn = {}
    for slot in slots:
        shape, dtype, modality = shapes[slot]
        params = pipe.steps[slot].draw(rng.fork(slot), Batch((len(keys), *shape), dtype, modality, keys.device))
        drawn[slot] = {"op": pipe.steps[slot].op, **{k: v for k, v in params.items() if not k.startswith("_")}}
    return drawn


def _shapes(pipe: Pipeline, start: int, sample_shape: tuple[int, ...], dtype: torch.dtype) -> list:
    """(sample shape, dtype, modality) each step from ``start`` sees."""
    shapes: list = [None] * len(pipe.steps)
    shape, modality = (1, *sample_shape), pipe.modality or Modality.IMAGE
    dtype = torch.float32 if dtype.is_floating_point else dtype
    for slot in range(start, len(pipe.steps)):
        step = pipe.steps[slot]
        shapes[slot] = (shape[1:], dtype, Modality(pipe.stages[slot] or modality))
        shape, dtype = step.output_shape(shape), step.output_dtype(dtype)
    return shapes


def choose_keys(pipe: Pipeline, sample_shape: tuple[int, ...], dtype: torch.dtype, rows: int, versions: int, *,
                seed: int = 0, start: int = 0, candidates: int = SEARCHED_KEYS) -> KeyChoice:
    """Keys for ``rows`` x ``versions`` tiles such that every step from ``start`` applied to some samples only
    (and every op of a policy step) is applied in at least one tile, where ``candidates`` keys hold one and the
    tiles are enough; the other tiles get the smallest keys left, as an unchosen grid would. Chosen keys
    go down the first columns, one per row in turn, so each original shows some of them."""
    shapes = _shapes(pipe, start, sample_shape, dtype)
    slots = list(range(start, len(pipe.steps)))
    probe = _draws(pipe, slots, shapes, seed, torch.arange(_PROBE))
    effects = {slot: _effects(probe[slot], _PROBE) for slot in slots}
    varying = [slot for slot in slots if effects[slot] is not None]
    targets = [(slot, name) for slot in varying for name in effects[slot]]
    hits, searched = [], 0
    while searched < candidates and targets:
        keys = torch.arange(searched, min(searched + (_CHUNK if searched else _CHUNK // 4), candidates))
        drawn = _draws(pipe, varying, shapes, seed, keys)
        columns = {slot: _effects(drawn[slot], len(keys)) for slot in varying}
        hits.append(torch.stack([columns[slot][name] for slot, name in targets], 1))
        searched += len(keys)
        if torch.cat(hits).any(0).all():
            break
    matrix = torch.cat(hits) if hits else torch.zeros(0, 0, dtype=torch.bool)
    tiles = rows * versions
    chosen: list[int] = []
    uncovered = matrix.any(0) if len(matrix) else torch.zeros(0, dtype=torch.bool)
    while len(chosen) < tiles and uncovered.any():
        gain = matrix[:, uncovered].sum(1)
        best = int(gain.argmax())  # ties: the smallest key
        chosen.append(best)
        uncovered &= ~matrix[best]
    taken = set(chosen)
    rest = (key for key in range(tiles + len(chosen)) if key not in taken)
    order = chosen + [next(rest) for _ in range(tiles - len(chosen))]
    grid = torch.empty(rows, versions, dtype=torch.int64)
    for index, key in enumerate(order):
        grid[index % rows, index // rows] = key
    never = [target for target, hit in zip(targets, matrix.any(0).tolist()) if not hit] if targets else []
    expected = [target for target, hit in zip(targets, matrix[chosen].any(0).tolist()) if hit] if chosen else []
    every_tile = list(range(start)) + [slot for slot in slots if effects[slot] is None]  # first steps fix the size
    return KeyChoice(grid.flatten(), targets, every_tile, never, expected, searched)


# --- what the grid shows -------------------------------------------------------------------------------

@dataclass
class Preview:
    """What a preview grid shows: per tile its key and caption; per step or policy op, the tiles applying it;
    what could not be shown and why; the line the title and the command print."""

    path: pathlib.Path | None
    keys: torch.Tensor
    captions: list[str]
    shown: dict[str, int] = field(default_factory=dict)  # step or "step: op" -> tiles
    missing: dict[str, str] = field(default_factory=dict)  # step or "step: op" -> why not shown
    every_tile: list[str] = field(default_factory=list)  # steps applied to every tile (with values of its own)
    summary: str = ""
    axis_labels: list[tuple[str, str]] = field(default_factory=list)  # (x, y) of each tile that has any


def coverage(pipe: Pipeline, params: list[dict], choice: KeyChoice, tiles: int) -> tuple[dict, dict, str]:
    """From the grid's own params: tiles per target, the targets not shown (and why), and a one-line summary
    ("every step appears at least once: ..." when it does)."""
    names = [step.op for step in pipe.steps]

    def label(slot: int, name: str | None = None) -> str:
        op = names[slot] if names.count(names[slot]) == 1 else f"{names[slot]} (step {slot + 1})"
        return op if name is None else f"{op}: {name}"

    by_slot = {slot: _effects(params[slot], tiles) for slot, _ in choice.targets}
    shown, missing = {}, {}
    for slot, name in choice.targets:
        count = int(by_slot[slot][name].sum())
        if count:
            shown[label(slot, name)] = count
        elif (slot, name) in choice.never:
            missing[label(slot, name)] = f"drawn by none of {choice.searched:,} keys searched"
        elif (slot, name) in choice.expected:  # e.g. mixing in batch mode: one draw for the whole batch
            missing[label(slot, name)] = "drawn for the whole batch, not per key: this grid's batch did not draw it"
        else:
            missing[label(slot, name)] = f"more to show than {tiles} tiles"
    parts, steps_missing = [], []
    for slot in dict.fromkeys(slot for slot, _ in choice.targets):
        ops = [name for s, name in choice.targets if s == slot]
        if ops == [None]:
            if label(slot) in shown:
                tiles_shown = shown[label(slot)]
                parts.append(f"{label(slot)} ({tiles_shown} tile{'s' if tiles_shown > 1 else ''})")
            else:
                steps_missing.append(f"{label(slot)} ({missing[label(slot)]})")
            continue
        seen = [op for op in ops if label(slot, op) in shown]
        if not seen:
            steps_missing.append(f"{label(slot)} ({missing[label(slot, ops[0])]})")
        elif len(seen) == len(ops):
            parts.append(f"{label(slot)} (all {len(ops)} ops)")
        else:
            reasons: dict[str, list[str]] = {}
            for op in ops:
                if op not in seen:
                    reasons.setdefault(missing[label(slot, op)], []).append(op)
            absent = "; ".join(f"{', '.join(group)}: {why}" for why, group in reasons.items())
            parts.append(f"{label(slot)} ({len(seen)} of {len(ops)} ops; not shown: {absent})")
    if choice.every_tile:
        parts.append(f"{', '.join(label(slot) for slot in choice.every_tile)} on every tile")
    if steps_missing:
        summary = f"not every step appears: not shown: {'; '.join(steps_missing)}"
        return shown, missing, summary + (f"; shown: {', '.join(parts)}" if parts else "")
    return shown, missing, f"every step appears at least once: {', '.join(parts)}"


# --- samples -------------------------------------------------------------------------------------------

UCR_DATASETS = ("gunpoint", "basic_motions", "japanese_vowels", "arrow_head", "italy_power_demand")
SERIES_SHOWN = 4


def load_series(dataset: str) -> tuple[torch.Tensor, list[str]]:
    """A few float (N, C, T) series from a UCR/UEA dataset that ships inside sktime."""
    if dataset not in UCR_DATASETS:
        raise ValueError(f"--dataset: expected one of {', '.join(UCR_DATASETS)}, got {dataset!r}")
    try:
        from sktime import datasets
    except ImportError:
        raise ValueError("--dataset: time-series previews read UCR data from sktime: "
                         "pip install 'augserve[data]'") from None
    series, labels = getattr(datasets, f"load_{dataset}")(return_type="numpy3D")
    picks = np.linspace(0, len(series) - 1, SERIES_SHOWN).astype(int)
    return torch.from_numpy(series[picks].astype(np.float32)), [f"{dataset} #{i} (class {labels[i]})" for i in picks]


def synthetic_speech(count: int = 3, seconds: float = 6.0, rate: int = 16_000) -> tuple[torch.Tensor, list[str]]:
    """Waveforms (N, samples) of harmonic sweeps with syllable-like envelopes: speech-like test audio."""
    t = torch.arange(int(rate * seconds)) / rate
    waves = []
    for k in range(count):
        pitch = 120 + 60 * k + 40 * torch.sin(2 * math.pi * (0.5 + 0.3 * k) * t)
        phase = 2 * math.pi * torch.cumsum(pitch, 0) / rate
        voice = sum(torch.sin(h * phase) / h for h in range(1, 12))
        envelope = (torch.sin(2 * math.pi * (2 + k) * t).clamp(min=0)) ** 2
        waves.append(voice * envelope)
    return torch.stack(waves), [f"harmonic sweep {k + 1}" for k in range(count)]


CLIP_SECONDS = (1.0, 0.85, 0.7)  # the waveform preview's clips: valid durations, zero-padded to the longest


def synthetic_clips(rate: int = 16_000) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Waveform previews' samples: ``synthetic_speech`` cut to ``CLIP_SECONDS`` (peaks at 0.5) and zero-padded
    to one length (N, samples), their valid lengths (N,) and names."""
    waves, names = synthetic_speech(len(CLIP_SECONDS), max(CLIP_SECONDS), rate)
    lengths = torch.tensor([round(seconds * rate) for seconds in CLIP_SECONDS])
    waves = 0.5 * waves / waves.abs().amax(1, keepdim=True) * (torch.arange(waves.shape[-1]) < lengths[:, None])
    return waves, lengths, [f"{name}, {seconds:g} s" for name, seconds in zip(names, CLIP_SECONDS)]


def synthetic_spectrograms(count: int = 3, bins: int = 80, seconds: float = 6.0) -> tuple[torch.Tensor, list[str]]:
    """Standardized log-power spectrograms (N, bins, frames) of ``synthetic_speech``; standardized as
    SpecAugment's inputs are, so a zero mask is the mean level."""
    waves, names = synthetic_speech(count, seconds)
    power = torch.stft(waves, n_fft=512, hop_length=160, window=torch.hann_window(512),
                       return_complex=True).abs() ** 2
    pooled = torch.nn.functional.adaptive_avg_pool1d(power.transpose(1, 2), bins).transpose(1, 2)
    log_power = torch.log(pooled + 1e-6)
    mean, std = log_power.mean(dim=(1, 2), keepdim=True), log_power.std(dim=(1, 2), keepdim=True)
    return (log_power - mean) / std, names


# --- drawing -------------------------------------------------------------------------------------------

def _draw_tile(ax, sample: torch.Tensor, modality: str, limits: tuple[float, float] | None = None):
    if modality == "image":
        ax.imshow(sample.permute(1, 2, 0).numpy())
        return None
    if modality == "spectrogram":
        return ax.imshow(sample.reshape(-1, sample.shape[-1]).numpy(), origin="lower", aspect="auto", cmap="magma",
                         vmin=limits[0], vmax=limits[1], interpolation="nearest")
    for index, channel in enumerate(sample):
        ax.plot(channel.numpy(), linewidth=0.8, label=f"channel {index}")
    return None


def _takes_encoded(pipe: Pipeline) -> bool:
    try:
        pipe.first_steps()
    except ValueError:
        return False
    return True


def build_preview(spec, *, images_dir: str | None = None, dataset: str = "gunpoint", versions: int = 5,
                  size: int = 256, seed: int = 0):
    """The preview figure and what it shows (``Preview``, its ``path`` unset): ``spec`` run on every sample
    ``versions`` times with keys chosen so that every step shows (``choose_keys``).

    The samples match the pipeline's modality: photos (or ``images_dir``) for images, synthetic
    speech-like spectrograms, synthetic clips of 1, 0.85 and 0.7 s at 16 kHz for waveforms (drawn as
    waveform and log-mel rows: ``_waveform_grid``), or a UCR dataset for time series. Files of ``images_dir`` go in
    encoded, at their own sizes, when the pipeline starts with a step that fixes the size (as a
    server decodes them); otherwise resized squares.
    """
    require("matplotlib", "augserve preview").use("Agg")
    import matplotlib.pyplot as plt

    if not 1 <= versions <= 16:
        raise ValueError(f"--versions: expected 1..16, got {versions}")
    pipe = Pipeline.from_spec(pathlib.Path(spec[1:]) if isinstance(spec, str) and spec.startswith("@") else spec)
    modality = pipe.modality or "image"
    # Normalization only rescales values; drop it so the grid shows viewable pixels (the presets end with it,
    # so no other step moves to another position, whose stream it would draw from).
    kept = [s for s in pipe.steps if not isinstance(s, Normalize)]
    shown = Pipeline(kept, pipe.modality) if len(kept) < len(pipe.steps) else pipe
    encoded = modality == "image" and images_dir is not None and _takes_encoded(shown)
    if encoded:
        files, names = read_image_files(images_dir)
        decoded = EncodedBatch(files)
        samples = [decoded.decode(index) for index in range(len(files))]
        start = shown.first_steps()
        shape, dtype = first_steps.output(shown.steps[:start], decoded)
        sample_shape = shape[1:]
    else:
        if modality == "image":
            samples, names = load_images(images_dir, size)
        elif modality == "spectrogram":
            samples, names = synthetic_spectrograms()
        elif modality == "waveform":
            samples, lengths, names = synthetic_clips()
        else:
            samples, names = load_series(dataset)
        start, sample_shape, dtype = 0, tuple(samples.shape[1:]), samples.dtype
    rows = len(names)
    choice = choose_keys(shown, sample_shape, dtype, rows, versions, seed=seed, start=start)
    batch = [file for file in files for _ in range(versions)] if encoded else samples.repeat_interleave(versions, 0)
    out_dtype = "uint8" if modality == "image" else None
    waveform = modality == "waveform"
    batch_lengths = lengths.repeat_interleave(versions) if waveform else None
    result = shown(batch, seed=seed, keys=choice.keys, out_dtype=out_dtype, lengths=batch_lengths)
    tiles = len(choice.keys)
    texts = captions(result.params, tiles)
    shown_targets, missing, summary = coverage(shown, result.params, choice, tiles)
    title = spec if isinstance(spec, str) else "custom pipeline"
    heading = (f"{title}  [{', '.join(step.op for step in pipe.steps)}]  (seed {seed}"
               f"{'; normalize not shown' if shown is not pipe else ''}; each tile: its key and the ops it drew)")
    preview = Preview(None, choice.keys, texts, shown_targets, missing,
                      [shown.steps[slot].op for slot in choice.every_tile], summary)
    if waveform:
        fig = _waveform_grid(shown, samples, lengths, names, choice.keys, result, versions, seed,
                             f"{heading}\n{summary}")
        preview.axis_labels = _axis_labels(fig)
        return fig, preview

    cols = versions + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows + 0.7), squeeze=False,
                             sharey="row" if modality == "timeseries" else False)
    limits = None
    if modality == "spectrogram":
        values = torch.cat([torch.stack(list(samples)).flatten(), result.x.flatten()])
        limits = (float(values.min()), float(values.max()))
    image = None
    for r, name in enumerate(names):
        image = _draw_tile(axes[r][0], samples[r], modality, limits) or image
        axes[r][0].set_title(textwrap.fill(f"original: {name}", 34), fontsize=7)
        for v in range(versions):
            i = r * versions + v
            _draw_tile(axes[r][v + 1], result.x[i], modality, limits)
            axes[r][v + 1].set_title(textwrap.fill(f"key {int(choice.keys[i])}: {texts[i]}", 40), fontsize=6)
    labels = {"spectrogram": ("time (frames)", "frequency bin"),
              "timeseries": ("sample index (time step)", "value")}.get(modality)
    for r, row in enumerate(axes):
        for c, ax in enumerate(row):
            if labels is None:
                ax.axis("off")
                continue
            ax.tick_params(labelsize=5)
            ax.set_xlabel(labels[0] if r == rows - 1 else "", fontsize=6)
            ax.set_ylabel(labels[1] if c == 0 else "", fontsize=6)
    if modality == "timeseries" and samples.shape[1] > 1:
        axes[0][0].legend(fontsize=4, loc="best")
    width = int(16 * 2.3 * cols)  # characters a line of the title holds
    title_text = textwrap.fill(heading, width) + "\n" + textwrap.fill(summary, width)
    fig.suptitle(title_text, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.12 / fig.get_figheight()))  # a little air under the title
    if image is not None:  # every tile shares this colour scale
        fig.subplots_adjust(right=0.9)
        bar = fig.colorbar(image, cax=fig.add_axes((0.915, 0.3, 0.012, 0.4)))
        bar.set_label("log power (standardized)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    preview.axis_labels = _axis_labels(fig)
    return fig, preview


def _axis_labels(fig) -> list[tuple[str, str]]:
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes if ax.get_xlabel() or ax.get_ylabel()]


WAVE_ROW = ("time (s)", "amplitude")
SPECTROGRAM_ROW = ("time (frames)", "mel bin")


def _waveform_grid(pipe: Pipeline, samples: torch.Tensor, lengths: torch.Tensor, names: list[str],
                   keys: torch.Tensor, result, versions: int, seed: int, heading: str):
    """Two rows per sample: the waveform, then its log-mel spectrogram; the original in column 0.

    The waveform after is what the steps before the pipeline's converter make (the same steps at the same
    positions, seed and keys: the same draws); the spectrogram after is the pipeline's output where it
    converts, else the preset front end (``presets.LOG_MEL``) of the waveform after. A dashed line marks
    the end of each valid part (``lengths``) where the row is longer."""
    import matplotlib.pyplot as plt

    from augserve.presets import LOG_MEL

    steps, tiles = pipe.steps, len(keys)
    at = next((slot for slot, step in enumerate(steps) if step.produces), len(steps))
    batch, batch_lengths = samples.repeat_interleave(versions, 0), lengths.repeat_interleave(versions)
    if at == len(steps):  # stays a waveform: the front end shows how it sounds
        waves, wave_lengths = result.x, result.lengths
        front = Pipeline.from_spec([LOG_MEL])
        converted = front(waves, lengths=wave_lengths)
        spectra, frames = converted.x, converted.lengths
        spectrum_texts = ["log_mel of the waveform above (not a pipeline step)"] * tiles
    else:
        before = Pipeline(steps[:at], pipe.modality)(batch, seed=seed, keys=keys, lengths=batch_lengths) if at \
            else None
        waves, wave_lengths = (batch, batch_lengths) if before is None else (before.x, before.lengths)
        front = Pipeline(steps[at:at + 1], pipe.modality)
        spectra, frames = result.x, result.lengths
        spectrum_texts = [f"{steps[at].op}: {text}" for text in
                          captions(result.params[at + 1:], tiles, "no spectrogram step drawn")]
    wave_texts = captions(result.params[:at], tiles, "no waveform step drawn")
    original = front(samples, lengths=lengths)
    rate = front.steps[0].args["sample_rate"]
    limits = (float(torch.cat([original.x.flatten(), spectra.flatten()]).min()),
              float(torch.cat([original.x.flatten(), spectra.flatten()]).max()))

    rows, cols = 2 * len(names), versions + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.6 * len(names) + 0.9), squeeze=False,
                             gridspec_kw={"height_ratios": [2, 3] * len(names)})
    image = None
    for r, name in enumerate(names):
        wave_axes, spectrum_axes = axes[2 * r], axes[2 * r + 1]
        peak = 1.05 * float(max(samples[r].abs().max(), waves[r * versions:(r + 1) * versions].abs().max()))
        tiles_of_row = [(samples[r], int(lengths[r]), original.x[r], int(original.lengths[r]),
                         textwrap.fill(f"original: {name}", 40), "log_mel of the original")]
        for v in range(versions):
            i = r * versions + v
            retimed = f" → {int(wave_lengths[i]) / rate:.2f} s" if wave_lengths[i] != lengths[r] else ""
            tiles_of_row.append((waves[i], int(wave_lengths[i]), spectra[i], int(frames[i]),
                                 textwrap.fill(f"key {int(keys[i])}: {wave_texts[i]}{retimed}", 44),
                                 textwrap.fill(spectrum_texts[i], 44)))
        for c, (wave, valid, spectrum, valid_frames, wave_title, spectrum_title) in enumerate(tiles_of_row):
            ax = wave_axes[c]
            time = torch.arange(wave.shape[-1]) / rate
            for channel in wave.reshape(-1, wave.shape[-1]):
                ax.plot(time.numpy(), channel.numpy(), linewidth=0.4, color="tab:blue")
            ax.set_xlim(0, wave.shape[-1] / rate)
            ax.set_ylim(-peak, peak)
            ax.set_title(wave_title, fontsize=6)
            ax = spectrum_axes[c]
            image = ax.imshow(spectrum.reshape(-1, spectrum.shape[-1]).numpy(), origin="lower", aspect="auto",
                              cmap="magma", vmin=limits[0], vmax=limits[1], interpolation="nearest")
            ax.set_title(spectrum_title, fontsize=6)
            if valid < wave.shape[-1]:
                wave_axes[c].axvline(valid / rate, color="tab:red", linestyle="--", linewidth=0.8)
            if valid_frames < spectrum.shape[-1]:
                ax.axvline(valid_frames - 0.5, color="white", linestyle="--", linewidth=0.8)
    for r, row in enumerate(axes):
        x_label, y_label = WAVE_ROW if r % 2 == 0 else SPECTROGRAM_ROW
        for c, ax in enumerate(row):
            ax.tick_params(labelsize=5)
            ax.set_xlabel(x_label if r >= rows - 2 else "", fontsize=6)
            ax.set_ylabel(y_label if c == 0 else "", fontsize=6)
    width = int(16 * 2.6 * cols)
    note = ("rows: each sample's waveform, then its log-mel spectrogram; dashed: end of the valid part "
            "(lengths); speed and time stretch retime it")
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in (*heading.split("\n"), note)), fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.9, 1 - 0.15 / fig.get_figheight()))
    bar = fig.colorbar(image, cax=fig.add_axes((0.915, 0.3, 0.012, 0.4)))
    bar.set_label("log mel power (dB)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return fig


def write_preview(spec, out: str, **options) -> Preview:
    """Save ``build_preview``'s grid as a PNG at ``out``; what it shows (``Preview.path`` is the file)."""
    import matplotlib.pyplot as plt

    fig, preview = build_preview(spec, **options)
    preview.path = pathlib.Path(out)
    fig.savefig(preview.path, dpi=110)
    plt.close(fig)
    return preview
