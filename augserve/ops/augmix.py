"""AugMix (Hendrycks et al. 2020): ``width`` chains of ops per sample, mixed with Dirichlet weights and
blended with the original by a Beta weight; torchvision's and timm's arithmetic, batched.

Chains are layers of per-sample ops (``policy_kernels``) run as extra rows of the batch: step t of every
chain of every sample is one layer, a sample whose chain is shorter skips the rest. Both libraries draw the chain
weights from Dirichlet(alpha) and the original's share from Beta(alpha, alpha); they differ in how
they round: torchvision sums in float32 and truncates once, timm truncates the chain mixture, then
PIL-blends it with the original (or, ``blended``, blends each chain in turn).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from augserve.ops import casting, grouping
from augserve.ops.policy_kernels import Arranged, LayerParams, apply_layers
from augserve.random import Draw, SampleRng

MAX_RANDOM_DEPTH = 3  # depth -1: each chain 1 to 3 ops, as both libraries draw it


class AugMixDraw(Draw):
    CHAIN_WEIGHTS = 0
    BLEND = 1
    DEPTH = 2


@dataclass
class Mixture:
    """One AugMix draw per sample: the chains (layers of ops), their weights and the augmented share."""

    chains: LayerParams  # (width * B, depth): chain c of sample b is row c * B + b, SKIP past its depth
    arranged: Arranged  # what each row and layer of the chains runs
    chain_weights: torch.Tensor  # (B, width) float64, rows sum to 1
    augmented: torch.Tensor  # (B,) float64 in [0, 1]: the mixture's share against the original

    def rows(self, part: slice) -> "Mixture":
        """The weights of samples ``part`` (their chains are applied by then)."""
        return Mixture(self.chains, self.arranged, self.chain_weights[part], self.augmented[part])


def as_rows(ops: LayerParams, width: int) -> LayerParams:
    """(B, width * depth) chain ops, chain by chain, as (width * B, depth): one row per chain of a sample."""
    def rows(per_sample: torch.Tensor) -> torch.Tensor:
        return per_sample.view(per_sample.shape[0], width, -1).transpose(0, 1).flatten(0, 1)
    return LayerParams(ops.space, rows(ops.op_index), rows(ops.value),
                       None if ops.interpolation is None else rows(ops.interpolation))


def _tiled(x: torch.Tensor, chains: list[torch.Tensor], mixture: Mixture,
           mix: Callable[[torch.Tensor, list[torch.Tensor], Mixture], torch.Tensor]) -> torch.Tensor:
    """``mix`` over cache-sized groups of samples on the CPU (the whole batch on a GPU): the float mixture of a
    group's original and chains stays in cache, where one batch-wide float pass is 38 MB for 64x3x224x224."""
    out = torch.empty_like(x)
    for part in grouping.tiles(x):
        out[part] = mix(x[part], [chain[part] for chain in chains], mixture.rows(part))
    return out


def draw_mixture(rng: SampleRng, width: int, depth: int,
                 alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chain weights (B, width), augmented share (B,), chain depths (B, width) int64."""
    weights = rng.dirichlet(AugMixDraw.CHAIN_WEIGHTS, alpha, width)
    augmented = rng.dirichlet(AugMixDraw.BLEND, alpha, 2)[:, 1]
    if depth > 0:
        depths = torch.full((rng.batch_size, width), depth, dtype=torch.int64, device=rng.device)
    else:
        depths = 1 + rng.index(AugMixDraw.DEPTH, MAX_RANDOM_DEPTH, n=width)
    return weights, augmented, depths


def _chains(x: torch.Tensor, mixture: Mixture, interpolation: str, fill: Sequence[float] | float) -> list[torch.Tensor]:
    """Every chain over the whole batch, the chains as extra rows of one batch: each layer is one kernel
    call per op for all chains, whatever their number."""
    width = mixture.chain_weights.shape[1]
    rows = x.repeat(width, *([1] * (x.dim() - 1)))
    return list(apply_layers(rows, mixture.chains, mixture.arranged, interpolation, fill).split(x.shape[0]))


def _per_sample(weight: torch.Tensor) -> torch.Tensor:
    return weight.to(torch.float32).view(-1, 1, 1, 1)


def mix_torchvision(x: torch.Tensor, mixture: Mixture, interpolation: str,
                    fill: Sequence[float] | float) -> torch.Tensor:
    """torchvision's ``AugMix``: (1 - b) x + sum_i b w_i chain_i in float32, cast back (truncating) once."""
    return _tiled(x, _chains(x, mixture, interpolation, fill), mixture, _torchvision_mixture)


def _torchvision_mixture(x: torch.Tensor, chains: list[torch.Tensor], mixture: Mixture) -> torch.Tensor:
    augmented = mixture.augmented
    mix = x * _per_sample(1.0 - augmented)  # float32, read straight from uint8: one pass
    for c, chain in enumerate(chains):
        mix.addcmul_(chain, _per_sample(mixture.chain_weights[:, c] * augmented))
    return casting.like(mix, x)


def mix_timm(x: torch.Tensor, mixture: Mixture, interpolation: str, fill: Sequence[float] | float,
             blended: bool = False) -> torch.Tensor:
    """timm's ``AugMixAugment``: the chains' weighted sum clipped and truncated, then PIL-blended with the
    original by b; ``blended`` blends each chain into the running image in turn (timm's ``b1``)."""
    return _tiled(x, _chains(x, mixture, interpolation, fill), mixture,
                  _timm_blended_mixture if blended else _timm_mixture)


def _timm_mixture(x: torch.Tensor, chains: list[torch.Tensor], mixture: Mixture) -> torch.Tensor:
    mixed = torch.zeros_like(x, dtype=torch.float32)
    for c, chain in enumerate(chains):
        mixed.addcmul_(chain, _per_sample(mixture.chain_weights[:, c]))
    mixed.clamp_(0.0, 255.0 if x.dtype == torch.uint8 else 1.0)
    if x.dtype == torch.uint8:
        mixed.trunc_()
    return casting.like(_pil_blend(x.to(torch.float32), mixed, _per_sample(mixture.augmented), x.dtype), x)


def _timm_blended_mixture(x: torch.Tensor, chains: list[torch.Tensor], mixture: Mixture) -> torch.Tensor:
    out = x.to(torch.float32)
    for alpha, chain in zip(_blend_sequence(mixture.chain_weights * mixture.augmented[:, None]).unbind(1), chains):
        out = _pil_blend(out, chain.to(torch.float32), _per_sample(alpha), x.dtype)
    return casting.like(out, x)


def _pil_blend(image: torch.Tensor, other: torch.Tensor, alpha: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """PIL's ``Image.blend``: image + alpha (other - image) in float32, truncated for uint8."""
    out = image + alpha * (other - image)
    return out.trunc_() if dtype == torch.uint8 else out


def _blend_sequence(weights: torch.Tensor) -> torch.Tensor:
    """timm's ``_calc_blended_weights``: the per-chain blend alphas whose sequential blends give ``weights``."""
    alphas = torch.empty_like(weights)
    remaining = torch.ones_like(weights[:, 0])
    for c in reversed(range(weights.shape[1])):
        alphas[:, c] = weights[:, c] / remaining
        remaining = remaining * (1.0 - alphas[:, c])
    return alphas.to(torch.float32)
