"""Weight decay done right: decay the weights of conv and linear layers, nothing else.

Biases, normalization layers and embeddings are exempt (decaying them hurts, see Loshchilov &
Hutter 2019 and timm's ``param_groups_weight_decay``). Groups are decided by module type, not by
parameter name, so custom models need no naming convention.
"""

from __future__ import annotations

import torch
from torch import nn

DECAYED_MODULES = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear)


def decayed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The ``weight`` of every conv / linear layer: what weight decay and L1 act on."""
    return [module.weight for module in model.modules()
            if isinstance(module, DECAYED_MODULES) and isinstance(module.weight, nn.Parameter)
            and module.weight.requires_grad]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups: conv/linear weights with ``weight_decay``, everything else with 0.

    ``torch.optim.AdamW(param_groups(model, 0.05), lr=...)`` gives decoupled decay; with SGD the
    same groups give L2 on the weights only.
    """
    decayed = decayed_parameters(model)
    chosen = {id(p) for p in decayed}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


def l1_penalty(model: nn.Module, strength: float) -> torch.Tensor:
    """``strength * sum |w|`` over conv/linear weights: add it to the loss when sparsity is wanted."""
    return strength * sum(p.abs().sum() for p in decayed_parameters(model))


def elastic_net_penalty(model: nn.Module, strength: float, l1_ratio: float = 0.5) -> torch.Tensor:
    """scikit-learn's elastic net: ``strength * (l1_ratio * |w|_1 + (1 - l1_ratio) / 2 * |w|_2^2)``."""
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio: expected a value in [0, 1], got {l1_ratio}")
    weights = decayed_parameters(model)
    l1 = sum(p.abs().sum() for p in weights)
    l2 = sum(p.pow(2).sum() for p in weights)
    return strength * (l1_ratio * l1 + (1.0 - l1_ratio) / 2.0 * l2)
