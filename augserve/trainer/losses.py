"""Cross-entropy for class indices or soft labels, with label smoothing applied at most once."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("augserve.trainer")


class SoftTargetCrossEntropy(nn.Module):
    """``loss(logits, target, already_smoothed=0.0)``; target is ``(B,)`` indices or ``(B, K)`` soft labels.

    With class indices it equals ``nn.CrossEntropyLoss(label_smoothing=eps)``. Soft labels are
    smoothed the same way, ``(1 - eps) * y + eps / K``, unless the batch says its labels are
    already smoothed (``already_smoothed > 0``, the server's ``label_smoothing``): then they are
    used as they are, and a note is logged once.
    """

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: expected a value in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self._noted = False

    def forward(self, logits: torch.Tensor, target: torch.Tensor, already_smoothed: float = 0.0) -> torch.Tensor:
        epsilon = self.label_smoothing
        if epsilon and already_smoothed:
            if not self._noted:
                log.info("labels arrive smoothed (epsilon %.3g) by the server; not smoothing them again",
                         already_smoothed)
                self._noted = True
            epsilon = 0.0
        if not target.is_floating_point():
            return F.cross_entropy(logits, target, label_smoothing=epsilon)
        if target.shape != logits.shape:
            raise ValueError(f"target: expected soft labels of shape {tuple(logits.shape)}, got {tuple(target.shape)}")
        target = target.to(logits.dtype)
        if epsilon:
            target = target * (1.0 - epsilon) + epsilon / logits.shape[1]
        return torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()
