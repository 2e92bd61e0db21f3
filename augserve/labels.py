"""Label checks and conversion to (B, K) float32 soft labels."""

from __future__ import annotations

import numpy as np
import torch

MAX_CLASSES = 1_000_000
SUM_TOLERANCE = 1e-4


def as_soft_labels(labels, batch: int, num_classes: int | None, device: torch.device) -> torch.Tensor:
    """Class indices ``(B,)`` with ``num_classes``, or soft labels ``(B, K)``, as (B, K) float32 on ``device``.

    Every check reads the values on the host, before the one copy to ``device``: labels given on a GPU are
    copied to the host for it (a sync), so callers that care pass them from the host.
    """
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels)
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels: expected a tensor or array, got {type(labels).__name__}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or not 1 <= num_classes <= MAX_CLASSES):
        raise ValueError(f"num_classes: expected an integer in [1, {MAX_CLASSES}], got {num_classes!r}")
    if labels.shape[:1] != (batch,):
        raise ValueError(f"labels: expected {batch} rows (the batch size), got shape {tuple(labels.shape)}")
    labels = labels.cpu()

    if not labels.is_floating_point():
        if labels.dim() != 1 or labels.dtype == torch.bool:
            raise ValueError(f"labels: class indices must be a 1-D integer tensor, got {labels.dtype} "
                             f"of shape {tuple(labels.shape)}")
        if num_classes is None:
            raise ValueError("num_classes: required with class-index labels (expected an integer >= 1)")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"labels: class index {bad} is outside [0, {num_classes}) (num_classes={num_classes})")
        indices = labels.to(device=device, dtype=torch.int64)
        return torch.zeros(batch, num_classes, device=device).scatter_(1, indices[:, None], 1.0)  # one-hot

    if labels.dim() != 2:
        raise ValueError(f"labels: soft labels must be (B, K), got shape {tuple(labels.shape)}")
    if num_classes is not None and labels.shape[1] != num_classes:
        raise ValueError(f"labels: expected K = num_classes = {num_classes} columns, got {labels.shape[1]}")
    soft = labels.to(torch.float32)
    if not bool(torch.isfinite(soft).all()) or bool((soft < 0).any()):
        raise ValueError("labels: soft labels must be finite and non-negative")
    worst = float((soft.sum(dim=1) - 1.0).abs().max())
    if worst > SUM_TOLERANCE:
        raise ValueError(f"labels: each soft-label row must sum to 1 (tolerance {SUM_TOLERANCE}), "
                         f"worst row is off by {worst:.3g}")
    return soft.to(device)
