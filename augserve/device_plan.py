"""The device plan: every step draws on the host, the draws cross to the device in one copy, and the steps
apply branch-free there.

Draws are a pure function of (seed, key, slot) and the batch's shape, never its values, so they need
nothing from the device: made on the host they cost the device no kernel and no sync, and they are the
CPU's own numbers bit for bit. Every drawn tensor of every step is packed into one byte buffer
(``packing``), copied once, and read there through views; the apply half then launches the same kernels
with the same shapes for any seed and keys (``ops.plan``), which lets a CUDA graph (``server.graphs``)
replay it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from augserve.modality import Modality
from augserve.ops import plan
from augserve.ops.casting import to_out_dtype
from augserve.packing import Packed
from augserve.random import SampleRng
from augserve.steps.base import LENGTHS, Batch, Params, Step

HOST = torch.device("cpu")


def draw(steps: list[Step], stages: list[str | None], start: int, shape: tuple[int, ...], dtype: torch.dtype,
         rng: SampleRng, modality: str, lengths: torch.Tensor | None = None) -> list[Params]:
    """What steps ``start``.. draw for a batch of ``shape`` and ``dtype`` (and valid ``lengths``), on the host
    (branch-free: a step may work out there what its branch-free apply needs)."""
    drawn = []
    with plan.branch_free():
        for slot in range(start, len(steps)):
            step = steps[slot]
            batch = Batch(shape, dtype, Modality(stages[slot] or modality), HOST, lengths=lengths)
            step.check_shape(shape, dtype)
            drawn.append(step.draw(rng.fork(slot), batch))
            lengths = drawn[-1].get(LENGTHS, lengths)
            shape, dtype = step.output_shape(shape), step.output_dtype(dtype)
    return drawn


def apply(steps: list[Step], x: torch.Tensor, labels: torch.Tensor | None,
          params: list[Params]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The steps applied branch-free with their params (already on ``x``'s device)."""
    with plan.branch_free():
        for step, drawn in zip(steps, params):
            x = step.apply(x, drawn)
            labels = None if labels is None else step.relabel(labels, drawn)
    return x, labels


@dataclass
class Call:
    """A device-plan call with the host's half done: the steps left, the checked soft labels and every draw
    packed, on the host; ``run`` is the device's half (no host read, the same kernels for any draws)."""

    steps: list[Step]
    x: torch.Tensor  # the dense batch the steps start from, where it is
    labels: torch.Tensor | None  # (B, K) float32 soft labels, checked, on the host
    packed: Packed
    params: list[Params]  # what the call reports, per step (on the host)
    out_dtype: torch.dtype | None
    lengths: torch.Tensor | None = None  # the samples' valid lengths after the steps (on the host)

    def run(self, x: torch.Tensor, labels: torch.Tensor | None,
            buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch and labels augmented on their device; ``buffer`` is ``packed.host`` copied there."""
        x, labels = apply(self.steps, x, labels, self.packed.read(buffer))
        return to_out_dtype(x, self.out_dtype), labels
