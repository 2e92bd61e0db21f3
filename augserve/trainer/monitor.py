"""Learning curves: per-epoch records, the usual readings of them, and a PNG."""

from __future__ import annotations

import pathlib
import statistics
from dataclasses import dataclass

import numpy as np

from augserve.extras import require

TREND_WINDOW = 5


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    lr: float | None = None
    strength: float | None = None  # augmentation strength trained with, when a callback sets one
    gap: float | None = None  # the generalization gap that callback read


class History:
    """Epoch records plus the readings: generalization gap, overfitting ratio, validation trend."""

    def __init__(self, records: list[EpochRecord] | None = None):
        self.records: list[EpochRecord] = list(records or [])

    def append(self, record: EpochRecord) -> None:
        self.records.append(record)

    def column(self, name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in self.records], dtype=float)

    def generalization_gap(self) -> float:
        """Validation loss minus training loss at the last epoch (> 0: worse on unseen data)."""
        last = self.records[-1]
        return last.val_loss - last.train_loss

    def overfitting_ratio(self) -> float:
        """Validation loss over training loss at the last epoch (about 1: no overfitting)."""
        last = self.records[-1]
        return last.val_loss / max(last.train_loss, 1e-12)

    def val_trend(self, window: int = TREND_WINDOW) -> float:
        """Least-squares slope of the validation loss over the last ``window`` epochs, per epoch."""
        values = self.column("val_loss")[-window:]
        if len(values) < 2:
            return 0.0
        return float(np.polyfit(np.arange(len(values)), values, 1)[0])

    def diagnosis(self, fit_accuracy: float = 0.9) -> str:
        """One line, as learning curves are usually read.

        still improving: the best validation loss is among the last 5 epochs and the loss falls by
        more than 1% of itself per epoch; overfitting: validation loss is over 1.3x the training
        loss and 5% above its best (or rising); underfitting: training and validation accuracy
        both below ``fit_accuracy``; otherwise converged. (With augmentation or mixing the
        training numbers come from the augmented batches, so they read high in loss and low in
        accuracy; the rules lean on validation for that reason.)
        """
        if len(self.records) < 2 or self.records[-1].val_loss is None:
            return "not enough epochs with validation to judge"
        val = self.column("val_loss")
        trend, best = self.val_trend(), int(np.argmin(val))
        recent = float(np.mean(val[-TREND_WINDOW:]))
        ratio, last = self.overfitting_ratio(), self.records[-1]
        if best >= len(val) - TREND_WINDOW and trend < -0.01 * recent:
            return f"still improving: validation loss falling {-trend:.3g}/epoch; train longer"
        if ratio > 1.3 and (val[-1] > 1.05 * val[best] or trend > 0.005 * recent):
            return (f"overfitting: validation loss {ratio:.2f}x training loss and {val[-1] / val[best]:.2f}x its best "
                    f"(epoch {best}); regularize more or stop earlier")
        if last.train_accuracy < fit_accuracy and last.val_accuracy < fit_accuracy:
            return (f"underfitting: training accuracy {last.train_accuracy:.1%}, validation "
                    f"{last.val_accuracy:.1%}; use a bigger model, train longer or regularize less")
        return f"converged: best validation loss {val[best]:.4g} at epoch {best}"


def plot_learning_curves(histories: dict[str, History], path: str | pathlib.Path, title: str = "") -> pathlib.Path:
    """Loss and accuracy per epoch, train solid and validation dashed, one colour per run."""
    require("matplotlib", "learning curves").use("Agg")
    import matplotlib.pyplot as plt

    adaptive = any(r.strength is not None for history in histories.values() for r in history.records)
    figure, axes = plt.subplots(1, 3 if adaptive else 2, figsize=(16 if adaptive else 11, 4))
    loss_axis, accuracy_axis = axes[0], axes[1]
    for index, (name, history) in enumerate(histories.items()):
        colour = f"C{index}"
        epochs = history.column("epoch")
        for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
            axis.plot(epochs, history.column(f"train_{metric}"), color=colour, label=f"{name} train")
            if history.records and history.records[0].val_loss is not None:
                axis.plot(epochs, history.column(f"val_{metric}"), color=colour, linestyle="--", label=f"{name} val")
        if adaptive and any(r.strength is not None for r in history.records):
            axes[2].plot(epochs, history.column("strength"), color=colour, label=f"{name} strength")
            axes[2].plot(epochs, history.column("gap"), color=colour, linestyle=":", label=f"{name} gap (smoothed)")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    accuracy_axis.legend(fontsize=8)
    if adaptive:
        axes[2].set(xlabel="epoch", ylabel="strength / accuracy gap", title="augmentation strength")
        axes[2].legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def percent_mean_sd(values: list[float]) -> str:
    """Accuracies (fractions) as "mean ± sd" in percent, for the experiments' tables."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * spread:.1f}"
