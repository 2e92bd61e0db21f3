"""Batch-size tools: the linear scaling rule and warmup-then-cosine as a pure function of the step."""

from __future__ import annotations

import math

import torch


def linear_scaling_lr(base_lr: float, batch_size: int, base_batch_size: int = 256) -> float:
    """Goyal et al. 2017: the learning rate grows in proportion to the (effective) batch size."""
    return base_lr * batch_size / base_batch_size


def warmup_cosine(step: int, *, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Linear warmup from 0 to ``base_lr`` over ``warmup_steps``, then cosine decay to ``min_lr``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int,
                            min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """``warmup_cosine`` as a per-step LambdaLR (each group keeps its own base learning rate)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(
        step, total_steps=total_steps, warmup_steps=warmup_steps, base_lr=1.0, min_lr=min_lr_ratio))
