"""``augserve device-counts``: what one call of each preset costs a GPU on the device plan, counted on the CPU.

Each preset runs as the server runs it (checked on the host, the batch copied, keys and labels from the
host) on the stand-in CUDA device (``stand_in_device``): CPU values behind tensors that say ``cuda``. The
table counts kernels (ops on device tensors; views and allocations are free), host syncs and copies to the
device, at several batch sizes; whether another seed and other keys launch the very same kernels (what a
CUDA graph needs); and whether the result equals the CPU's grouped plan bit for bit.
"""

from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from augserve.pipeline import Pipeline
from augserve.presets import PRESETS
from augserve.tools.gpu_check import write_section
from augserve.tools.stand_in_device import OnDevice

SECTION = "## Device plan: kernels and syncs per call (`augserve device-counts`)"
EXTRA = {"augmix-m3-w3": "augmix-m3-w3", "rand-m9-mstd0.5-inc1": "rand-m9-mstd0.5-inc1",
         "mix + label_smoothing": [{"op": "mix"}, {"op": "label_smoothing"}],
         "table noise, mask, swap": {"modality": "tabular", "steps": [
             {"op": "feature_noise", "batch_stats": True}, {"op": "feature_mask", "fill": "marginal"},
             {"op": "swap_noise"}]}}


def batch_for(pipe: Pipeline, size: int, image_side: int) -> torch.Tensor:
    """Images (3 x side x side uint8), spectrograms (80 x 300), series (3 x 500), waveforms (1 s at 16 kHz) or
    tables (30 columns)."""
    generator = torch.Generator().manual_seed(size)
    if pipe.modality == "spectrogram":
        return torch.randn(size, 80, 300, generator=generator)
    if pipe.modality == "timeseries":
        return torch.randn(size, 3, 500, generator=generator)
    if pipe.modality == "waveform":
        return 0.1 * torch.randn(size, 16000, generator=generator)
    if pipe.modality == "tabular":
        return torch.randn(size, 30, generator=generator)
    return torch.randint(0, 256, (size, 3, image_side, image_side), dtype=torch.uint8, generator=generator)


def count(spec, x: torch.Tensor, seed: int = 1) -> tuple[OnDevice, torch.Tensor]:
    """A call's second run counted (the first fills per-device constants), and its result on the host."""
    pipe = Pipeline.from_spec(spec)
    size = x.shape[0]
    with OnDevice(cuda=True) as device:
        checked = pipe.check(x)
        for _ in range(2):
            device.reset()
            out = pipe(checked.to("cuda"), torch.arange(size) % 10, seed=seed, keys=torch.arange(size) * 7 + seed,
                       num_classes=10)
    return device, out.x.values


def rows(sizes: list[int], image_side: int) -> list[str]:
    specs = {**{name: name for name in PRESETS}, **EXTRA}
    lines = [f"| pipeline | {' | '.join(f'kernels, B={b}' for b in sizes)} | host syncs | copies to the device | "
             "same kernels for another seed | equal to the CPU's grouped plan |",
             "|---|" + "---:|" * len(sizes) + "---:|---:|---|---|"]
    for name, spec in tqdm(specs.items(), desc="device counts", unit="pipeline"):
        counted = []
        for size in sizes:
            pipe = Pipeline.from_spec(spec)
            x = batch_for(pipe, size, image_side)
            device, result = count(spec, x)
            counted.append(device)
            if size == sizes[0]:
                other, _ = count(spec, x, seed=2)
                grouped = pipe(x, torch.arange(size) % 10, seed=1, keys=torch.arange(size) * 7 + 1, num_classes=10).x
                same_bits = torch.equal(result, grouped)
        first = counted[0]
        lines.append(f"| {name} | {' | '.join(f'{d.kernels:,}' for d in counted)} | "
                     f"{max(len(d.syncs) for d in counted)} | {len(first.host_copies)} | "
                     f"{'yes' if other.trace == first.trace else 'no'} | {'yes' if same_bits else 'no'} |")
    return lines


def run(args: argparse.Namespace) -> int:
    """``augserve device-counts``: ``args.sizes`` (comma-separated batch sizes), ``args.image_side``, ``args.out``."""
    sizes = [int(size) for size in args.sizes.split(",")]
    lines = [f"Images 3x{args.image_side}x{args.image_side} uint8, spectrograms 80x300, series 3x500, waveforms 1 s at "
             "16 kHz, tables of 30 columns; copies to "
             "the device: the batch, its labels and one buffer of every draw.", "", *rows(sizes, args.image_side)]
    print("\n".join(lines))
    if args.out:
        write_section(args.out, lines, SECTION)
    return 0
