"""The steps that bring encoded images of any sizes to one size: drawn per sample, run per image.

A pipeline for encoded images starts with a step that fixes the output size
(``random_resized_crop``, ``resize`` to ``[h, w]``, or ``resize`` + ``center_crop``). Its draws
use each image's own size from its header, so a sample's crop box replays whatever batch it
arrives in. Images of different sizes share no tensor, so each one is decoded and run through
these first steps on its own (in parallel, as DALI's decoders do); what comes out is one dense
batch for the rest of the pipeline. Each image goes through exactly the kernels a dense batch of
that one image would, so the result is bit-identical to decoding it and running it alone.
"""

from __future__ import annotations

import concurrent.futures
import os

import torch

from augserve.encoded.batch import CHANNELS, EncodedBatch
from augserve.modality import Modality
from augserve.random import SampleRng
from augserve.steps.base import Batch, Params, Step, rows
from augserve.steps.image import CenterCrop, Resize

SIZE_FIXING = "random_resized_crop, resize to [h, w], or resize + center_crop"
# Each decode thread runs its torch ops on one thread: the images are the parallelism. A decode thread
# left at the default opens an OpenMP team of its own, and after that the caller's batched steps ran
# 2.3x slower on the 2-core machine (hflip + RandAugment on 64x3x224x224: 20 -> 47 ms), for good.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="augserve-decode",
                                              initializer=torch.set_num_threads, initargs=(1,))


def count(steps: list[Step]) -> int:
    """How many leading steps fix the size of encoded images; ValueError naming what is missing."""
    if steps[0].fixes_size:
        return 1
    if len(steps) > 1 and isinstance(steps[0], Resize) and isinstance(steps[1], CenterCrop):
        return 2
    raise ValueError(f"pipeline: encoded images of any size need a first step that fixes the output size "
                     f"({SIZE_FIXING}); {steps[0].where} does not")


def _image_shapes(steps: list[Step], sizes: torch.Tensor) -> list[torch.Tensor]:
    """Per-sample (H, W) before each step, and after the last."""
    shapes = [sizes]
    for step in steps:
        unique, inverse = torch.unique(shapes[-1], dim=0, return_inverse=True)
        after = torch.tensor([step.output_shape((1, CHANNELS, *map(int, hw)))[-2:] for hw in unique],
                             dtype=torch.int64)
        shapes.append(after[inverse])
    return shapes


def output(steps: list[Step], batch: EncodedBatch) -> tuple[tuple[int, ...], torch.dtype]:
    """The dense batch's shape and dtype after the first steps; every refusal before any decoding."""
    shapes = _image_shapes(steps, batch.sizes)
    for step, before in zip(steps, shapes):
        for height, width in torch.unique(before, dim=0).tolist():
            step.check_shape((1, CHANNELS, height, width), torch.uint8)
    height, width = shapes[-1][0].tolist()
    return (len(batch), CHANNELS, height, width), torch.uint8


def run(steps: list[Step], batch: EncodedBatch, rng: SampleRng) -> tuple[torch.Tensor, list[Params]]:
    """Decode every image and run it through ``steps`` (slots 0..): the dense batch and what each step drew
    (where ``rng`` is: the host, so a box is the same on any device)."""
    shapes = _image_shapes(steps, batch.sizes)
    size = len(batch)
    drawn = [step.draw(rng.fork(slot), Batch((size, CHANNELS, -1, -1), torch.uint8, Modality.IMAGE, rng.device,
                                             before.to(rng.device)))
             for slot, (step, before) in enumerate(zip(steps, shapes))]
    on_device = batch.decode_jpegs_on_device() if batch.device.type == "cuda" else {}

    def one(index: int) -> torch.Tensor:
        pixels = on_device.get(index)
        if pixels is None:
            pixels = batch.decode(index).to(batch.device)
        x = pixels[None]
        for step, params in zip(steps, drawn):
            x = step.apply(x, rows(params, index, index + 1))
        return x

    def chunk(indices: range) -> list[torch.Tensor]:
        return [one(index) for index in indices]

    workers = max(1, min(torch.get_num_threads(), size))
    bounds = [size * k // workers for k in range(workers + 1)]
    chunks = _POOL.map(chunk, [range(lo, hi) for lo, hi in zip(bounds, bounds[1:])])
    return torch.cat([x for part in chunks for x in part]), drawn
