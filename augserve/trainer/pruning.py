"""Magnitude pruning on ``torch.nn.utils.prune``: per layer, global, iterative with rewinding, reports."""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import prune

from augserve.trainer.decay import DECAYED_MODULES


def prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every conv / linear layer: the weights pruning acts on."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, DECAYED_MODULES)]


def prune_layers(model: nn.Module, amount: float) -> None:
    """Remove the smallest-|w| fraction ``amount`` of each layer's remaining weights."""
    for _, module in prunable(model):
        prune.l1_unstructured(module, "weight", amount=amount)


def prune_global(model: nn.Module, amount: float) -> None:
    """Remove the smallest-|w| fraction ``amount`` of all remaining conv/linear weights, ranked together."""
    prune.global_unstructured([(module, "weight") for _, module in prunable(model)],
                              pruning_method=prune.L1Unstructured, amount=amount)


def sparsity_report(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per layer and in total: zero weights, all weights, and the fraction that is zero."""
    report, zeros, total = {}, 0, 0
    for name, module in prunable(model):
        weight = module.weight
        layer_zeros, layer_total = int((weight == 0).sum()), weight.numel()
        report[name] = {"zeros": layer_zeros, "total": layer_total, "sparsity": layer_zeros / layer_total}
        zeros, total = zeros + layer_zeros, total + layer_total
    report["total"] = {"zeros": zeros, "total": total, "sparsity": zeros / max(total, 1)}
    return report


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold masks into the weights (``prune.remove``) so the model exports as a plain one."""
    for _, module in prunable(model):
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    return model


def rewind(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` (saved before pruning) into the model, keeping the pruning masks."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for key, value in state.items():
            owner, _, attribute = key.rpartition(".")
            module = modules[owner]
            if attribute == "weight" and hasattr(module, "weight_orig"):
                module.weight_orig.copy_(value)
                module.weight = module.weight_orig * module.weight_mask
            else:
                getattr(module, attribute).copy_(value)


def iterative_magnitude_pruning(model: nn.Module, train: Callable[[nn.Module], None], *, target_sparsity: float,
                                rounds: int, rewind_state: dict[str, torch.Tensor]) -> list[float]:
    """Lottery-ticket IMP with late resetting (Frankle et al. 2019/2020).

    Each round trains (``train(model)``), prunes the same fraction of the remaining weights
    globally, and rewinds the survivors to ``rewind_state`` (weights saved early in training;
    pass the initial weights for the original lottery ticket). After ``rounds`` rounds the
    sparsity is ``target_sparsity``; a final ``train`` trains the ticket. Returns the sparsity
    after each round.
    """
    if not 0.0 < target_sparsity < 1.0 or rounds < 1:
        raise ValueError(f"expected 0 < target_sparsity < 1 and rounds >= 1, got {target_sparsity}, {rounds}")
    rewind_state = copy.deepcopy(rewind_state)
    per_round = 1.0 - (1.0 - target_sparsity) ** (1.0 / rounds)
    sparsities = []
    for _ in range(rounds):
        train(model)
        prune_global(model, per_round)
        rewind(model, rewind_state)
        sparsities.append(sparsity_report(model)["total"]["sparsity"])
    train(model)
    return sparsities
