"""Preview grids: each original beside several augmented versions, captioned with the ops drawn."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import torch

from augserve.encoded import EncodedBatch
from augserve.extras import require
from augserve.photos import load_images, read_image_files
from augserve.pipeline import Pipeline
from augserve.steps import Normalize

def _captions(params: list[dict], count: int) -> list[str]:
    """Short per-sample text: the policy ops, random steps and mixing each sample drew."""
    lines = [[] for _ in range(count)]
    for step in params:
        if "space" in step:
            space = step["space"]
            for i, row in enumerate(step["ops"].tolist()):
                lines[i].append("+".join(space[k] for k in row if k >= 0) or "none")
        elif "lam" in step:
            for i, (mixed, cut, lam) in enumerate(zip(step["mixed"].tolist(), step["cutmix"].tolist(),
                                                      step["lam"].tolist())):
                if mixed:
                    lines[i].append(f"{'cutmix' if cut else 'mixup'} {lam:.2f}")
        elif "applied" in step:
            for i, hit in enumerate(step["applied"].tolist()):
                if hit:
                    lines[i].append(step["op"])
    return [", ".join(parts) for parts in lines]


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


def _draw(ax, sample: torch.Tensor, modality: str) -> None:
    if modality == "image":
        ax.imshow(sample.permute(1, 2, 0).numpy())
    elif modality == "spectrogram":
        ax.imshow(sample.reshape(-1, sample.shape[-1]).numpy(), origin="lower", aspect="auto", cmap="magma")
    else:
        for channel in sample:
            ax.plot(channel.numpy(), linewidth=0.8)


def _takes_encoded(pipe: Pipeline) -> bool:
    try:
        pipe.first_steps()
    except ValueError:
        return False
    return True


def write_preview(spec, out: str, *, images_dir: str | None = None, dataset: str = "gunpoint", versions: int = 5,
                  size: int = 256, seed: int = 0) -> pathlib.Path:
    """Run ``spec`` on every sample ``versions`` times (distinct keys) and save a PNG grid.

    The samples match the pipeline's modality: photos (or ``images_dir``) for
    images, synthetic speech-like spectrograms, or a UCR dataset for time series.
    Files of ``images_dir`` go in encoded, at their own sizes, when the pipeline starts
    with a step that fixes the size (as a server decodes them); otherwise resized squares.
    """
    require("matplotlib", "augserve preview").use("Agg")
    import matplotlib.pyplot as plt

    if not 1 <= versions <= 16:
        raise ValueError(f"--versions: expected 1..16, got {versions}")
    pipe = Pipeline.from_spec(pathlib.Path(spec[1:]) if isinstance(spec, str) and spec.startswith("@") else spec)
    modality = pipe.modality or "image"
    # Normalization only rescales values; drop it so the grid shows viewable pixels.
    shown = Pipeline([s for s in pipe.steps if not isinstance(s, Normalize)], pipe.modality)
    encoded = modality == "image" and images_dir is not None and _takes_encoded(shown)
    if encoded:
        files, names = read_image_files(images_dir)
        decoded = EncodedBatch(files)
        samples = [decoded.decode(index) for index in range(len(files))]
    elif modality == "image":
        samples, names = load_images(images_dir, size)
    elif modality == "spectrogram":
        samples, names = synthetic_spectrograms()
    elif modality == "waveform":
        samples, names = synthetic_speech()
    else:
        samples, names = load_series(dataset)
    batch = [file for file in files for _ in range(versions)] if encoded else samples.repeat_interleave(versions, 0)
    out_dtype = "uint8" if modality == "image" else None
    result = shown(batch, seed=seed, keys=torch.arange(len(batch)), out_dtype=out_dtype)
    captions = _captions(result.params, len(batch))
    if modality == "waveform":  # show what the front end makes of the audio, then the augmented versions
        samples, modality = Pipeline(pipe.steps[:1])(samples).x, pipe.steps[0].produces

    rows, cols = len(names), versions + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False,
                             sharey="row" if modality == "timeseries" else False)
    for r, name in enumerate(names):
        _draw(axes[r][0], samples[r], modality)
        axes[r][0].set_title(f"original: {name}", fontsize=7)
        for v in range(versions):
            i = r * versions + v
            _draw(axes[r][v + 1], result.x[i], modality)
            axes[r][v + 1].set_title(captions[i], fontsize=6, wrap=True)
    for ax in axes.flat:
        if modality != "timeseries":
            ax.axis("off")
        ax.tick_params(labelsize=5)
    title = spec if isinstance(spec, str) else "custom pipeline"
    steps = ", ".join(step.op for step in pipe.steps)
    fig.suptitle(f"{title}  [{steps}]  (seed {seed}; normalize steps not shown)", fontsize=9)
    fig.tight_layout()
    path = pathlib.Path(out)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
