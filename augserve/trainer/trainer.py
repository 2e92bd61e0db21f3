"""``Trainer``: the loop, readable on one screen, with the regularizers wired in as plain arguments."""

from __future__ import annotations

import pathlib
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm import tqdm

from augserve.trainer.early_stopping import EarlyStopping
from augserve.trainer.losses import SoftTargetCrossEntropy
from augserve.trainer.monitor import EpochRecord, History


def unpack(batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(x, y, label smoothing already applied) from an augserve ``Batch`` or an ``(x, y[, index])`` tuple.

    uint8 images become float in [0, 1].
    """
    if hasattr(batch, "labels") and hasattr(batch, "x"):
        x, y, smoothed = batch.x, batch.labels, float(getattr(batch, "label_smoothing", 0.0))
    else:
        x, y, smoothed = batch[0], batch[1], 0.0
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    return x, y, smoothed


def correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Correct predictions; soft labels count as their argmax."""
    target = y.argmax(dim=1) if y.is_floating_point() else y
    return int((logits.argmax(dim=1) == target).sum())


class Trainer:
    """``Trainer(model, optimizer, loss).fit(train, val, epochs)`` -> ``History``.

    ``accumulate`` sums gradients over that many batches per optimizer step; ``amp`` (default:
    on for CUDA) runs the forward pass in autocast with a gradient scaler; ``penalty(model)`` adds
    to the loss (e.g. ``l1_penalty``); ``scheduler`` steps once per optimizer step;
    ``early_stopping`` watches the validation loss and restores the best weights at the end;
    ``checkpoint`` is where the best model is saved with ``config``; ``callbacks`` are called as
    ``callback(trainer, record)`` after every epoch.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: nn.Module | None = None, *,
                 device: torch.device | str | None = None, scheduler=None, accumulate: int = 1,
                 amp: bool | None = None, max_grad_norm: float | None = None,
                 penalty: Callable[[nn.Module], torch.Tensor] | None = None,
                 early_stopping: EarlyStopping | None = None, checkpoint: str | pathlib.Path | None = None,
                 config: dict | None = None, callbacks: Iterable[Callable] = (), progress: bool = True):
        if accumulate < 1:
            raise ValueError(f"accumulate: expected at least 1, got {accumulate}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.loss = loss or SoftTargetCrossEntropy()
        self.accumulate, self.max_grad_norm, self.penalty = accumulate, max_grad_norm, penalty
        self.amp = self.device.type == "cuda" if amp is None else amp
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.early_stopping, self.checkpoint, self.config = early_stopping, checkpoint, config or {}
        self.callbacks, self.progress = list(callbacks), progress
        self.history = History()
        self.best_val_loss = float("inf")

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, smoothed: float) -> torch.Tensor:
        if isinstance(self.loss, SoftTargetCrossEntropy):
            value = self.loss(logits, y, already_smoothed=smoothed)
        else:
            value = self.loss(logits, y)
        return value + self.penalty(self.model) if self.penalty else value

    def _step(self) -> None:
        if self.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()

    def train_epoch(self, loader: Iterable, epoch: int) -> tuple[float, float]:
        self.model.train()
        total, right, seen, pending = 0.0, 0, 0, 0
        for batch in tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not self.progress):
            x, y, smoothed = unpack(batch, self.device)
            with torch.autocast(self.device.type, enabled=self.amp):
                logits = self.model(x)
                loss = self._loss(logits, y, smoothed)
            self.scaler.scale(loss / self.accumulate).backward()
            pending += 1
            if pending == self.accumulate:
                self._step()
                pending = 0
            total, right, seen = total + loss.item() * len(x), right + correct(logits, y), seen + len(x)
        if pending:
            self._step()
        return total / max(seen, 1), right / max(seen, 1)

    @torch.no_grad()
    def evaluate(self, loader: Iterable) -> tuple[float, float]:
        """(mean loss, accuracy) without label smoothing, as a test set is scored.

        A loader with no samples is refused: its (0, 0) would read as a perfect loss and no accuracy to
        early stopping, checkpoints and ``AdaptiveStrength``.
        """
        self.model.eval()
        total, right, seen = 0.0, 0, 0
        for batch in loader:
            x, y, _ = unpack(batch, self.device)
            with torch.autocast(self.device.type, enabled=self.amp):
                logits = self.model(x)
            target = y if y.is_floating_point() else nn.functional.one_hot(y, logits.shape[1]).float()
            loss = torch.sum(-target * torch.log_softmax(logits.float(), dim=1), dim=1).sum()
            total, right, seen = total + loss.item(), right + correct(logits, y), seen + len(x)
        if not seen:
            raise ValueError("evaluate: the loader yielded no samples (an empty validation split?); "
                             "there is no loss or accuracy to read")
        return total / seen, right / seen

    def fit(self, train: Iterable, val: Iterable | None = None, epochs: int = 1, *,
            train_eval: Iterable | None = None) -> History:
        """Train for ``epochs``; ``train_eval`` (the training data without augmentation) is scored after every
        epoch as validation is, so curves can show clean training accuracy beside the augmented batches'."""
        for epoch in range(epochs):
            train_loss, train_accuracy = self.train_epoch(train, epoch)
            val_loss, val_accuracy = self.evaluate(val) if val is not None else (None, None)
            clean_loss, clean_accuracy = self.evaluate(train_eval) if train_eval is not None else (None, None)
            record = EpochRecord(epoch, train_loss, train_accuracy, val_loss, val_accuracy,
                                 self.optimizer.param_groups[0]["lr"], train_clean_loss=clean_loss,
                                 train_clean_accuracy=clean_accuracy)
            self.history.append(record)
            if val_loss is not None and val_loss < self.best_val_loss:
                self.best_val_loss = val_loss
                self._save(record)
            for callback in self.callbacks:
                callback(self, record)
            if self.early_stopping is not None and val_loss is not None and \
                    self.early_stopping.step(val_loss, self.model):
                break
        self.history.kept_index = None  # the last epoch's weights
        if self.early_stopping is not None:
            self.early_stopping.restore(self.model)
            if self.early_stopping.best_state is not None:  # one step per record, so its count indexes them
                self.history.kept_index = self.early_stopping.best_epoch
        return self.history

    def _save(self, record: EpochRecord) -> None:
        if self.checkpoint is None:
            return
        path = pathlib.Path(self.checkpoint)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": self.model.state_dict(), "config": self.config, "epoch": record.epoch,
                    "val_loss": record.val_loss}, path)


def load_checkpoint(path: str | pathlib.Path, model: nn.Module | None = None) -> dict:
    """A checkpoint saved by ``Trainer`` (tensors and plain data only: ``weights_only=True``)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if model is not None:
        model.load_state_dict(checkpoint["model"])
    return checkpoint
