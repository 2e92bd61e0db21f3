"""The dropout family: rates for a whole model, DropBlock, DropConnect, stochastic depth, MC dropout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import DropBlock2d, StochasticDepth

__all__ = ["DropBlock2d", "DropConnectLinear", "ResidualWithStochasticDepth", "mc_dropout_predict", "set_dropout",
           "stochastic_depth_rates"]

DROPOUT_MODULES = (nn.modules.dropout._DropoutNd, DropBlock2d)


def set_dropout(model: nn.Module, p: float) -> int:
    """Set the rate of every dropout / DropBlock module; returns how many were changed."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p: expected a rate in [0, 1), got {p}")
    changed = 0
    for module in model.modules():
        if isinstance(module, DROPOUT_MODULES):
            module.p = p
            changed += 1
    return changed


class DropConnectLinear(nn.Linear):
    """A linear layer that drops individual weights while training (Wan et al. 2013).

    Each forward pass draws a fresh Bernoulli(1 - p) mask over the weight matrix and rescales the
    kept weights by 1 / (1 - p), so the expected output equals the plain layer's (used at eval).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.5):
        super().__init__(in_features, out_features, bias)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p: expected a rate in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return super().forward(x)
        keep = torch.empty_like(self.weight).bernoulli_(1.0 - self.p)
        return F.linear(x, self.weight * keep / (1.0 - self.p), self.bias)


def stochastic_depth_rates(blocks: int, final_drop: float) -> list[float]:
    """Drop rates of blocks 1..L by the linear decay rule: survival p_l = 1 - l / L * (1 - p_L).

    (Huang et al. 2016, with p_L = 1 - final_drop the survival of the last block.)
    """
    if blocks < 1 or not 0.0 <= final_drop < 1.0:
        raise ValueError(f"expected blocks >= 1 and final_drop in [0, 1), got {blocks}, {final_drop}")
    return [layer / blocks * final_drop for layer in range(1, blocks + 1)]


class ResidualWithStochasticDepth(nn.Module):
    """``x + StochasticDepth(branch(x))``: the residual branch is dropped per sample with rate ``p``."""

    def __init__(self, branch: nn.Module, p: float, mode: str = "row"):
        super().__init__()
        self.branch = branch
        self.drop = StochasticDepth(p, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.branch(x))


@torch.no_grad()
def mc_dropout_predict(model: nn.Module, x: torch.Tensor, passes: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo dropout (Gal & Ghahramani 2016): mean and variance of softmax over ``passes`` runs.

    Only dropout modules are switched to training mode; normalization layers stay in eval.
    """
    if passes < 1:
        raise ValueError(f"passes: expected at least 1, got {passes}")
    was_training = model.training
    model.eval()
    dropouts = [m for m in model.modules() if isinstance(m, DROPOUT_MODULES)]
    for module in dropouts:
        module.train()
    try:
        probabilities = torch.stack([F.softmax(model(x), dim=1) for _ in range(passes)])
    finally:
        model.train(was_training)
    return probabilities.mean(0), probabilities.var(0, unbiased=False)
