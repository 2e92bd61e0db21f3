"""Early stopping with patience, min_delta, min/max mode and restoring the best weights."""

from __future__ import annotations

import copy
import math

from torch import nn


class EarlyStopping:
    """``stop = early.step(val_loss, model)`` once per epoch; ``early.restore(model)`` at the end.

    An epoch improves when its value beats the best by more than ``min_delta``; on the
    ``patience``-th epoch in a row without improvement ``step`` returns True (the classic
    patience rule of Keras' EarlyStopping callback).
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0, mode: str = "min", restore_best: bool = True):
        if patience < 0 or min_delta < 0 or mode not in ("min", "max"):
            raise ValueError(f"expected patience >= 0, min_delta >= 0, mode 'min' or 'max'; "
                             f"got {patience}, {min_delta}, {mode!r}")
        self.patience, self.min_delta, self.mode, self.restore_best = patience, min_delta, mode, restore_best
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1
        self.epoch = -1
        self.bad_epochs = 0
        self.best_state: dict | None = None

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value: float, model: nn.Module | None = None) -> bool:
        """Record one epoch's value; True when training should stop."""
        self.epoch += 1
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, self.epoch, 0
            if model is not None and self.restore_best:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights back into ``model``."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
