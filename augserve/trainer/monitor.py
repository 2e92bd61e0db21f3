"""Learning curves: per-epoch records, the usual readings of them, and a PNG with its data beside it."""

from __future__ import annotations

import json
import math
import pathlib
import statistics
from dataclasses import asdict, dataclass

import numpy as np

from augserve.extras import require

TREND_WINDOW = 5


@dataclass
class EpochRecord:
    epoch: int  # 0 for the first epoch (curves and tables count from 1)
    train_loss: float  # over the epoch's training batches, as trained on (augmented, mixed, smoothed if so)
    train_accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    lr: float | None = None
    strength: float | None = None  # augmentation strength trained with, when a callback sets one
    signal: float | None = None  # what that callback read (smoothed), and what it is
    signal_name: str | None = None
    train_clean_loss: float | None = None  # the training data unaugmented, scored after the epoch (``train_eval``)
    train_clean_accuracy: float | None = None


class History:
    """Epoch records plus the readings: generalization gap, overfitting ratio, validation trend.

    ``augmented`` says whether the training batches were augmented (None: not known), so that curves
    can say which accuracy is on augmented batches; ``kept_index`` is the record whose weights the run
    ended with (early stopping restores an earlier one; None: the last), the point its final scores
    belong to.
    """

    def __init__(self, records: list[EpochRecord] | None = None, augmented: bool | None = None):
        self.records: list[EpochRecord] = list(records or [])
        self.augmented = augmented
        self.kept_index: int | None = None

    def append(self, record: EpochRecord) -> None:
        self.records.append(record)

    def to_dict(self) -> dict:
        """The records as plain values (JSON), every number as it was: what ``from_dict`` rebuilds."""
        return {"records": [asdict(r) for r in self.records], "augmented": self.augmented,
                "kept_index": self.kept_index}

    @classmethod
    def from_dict(cls, value: dict) -> "History":
        history = cls([EpochRecord(**record) for record in value["records"]], value["augmented"])
        history.kept_index = value["kept_index"]
        return history

    def column(self, name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in self.records], dtype=float)

    def has(self, name: str) -> bool:
        """Whether every record carries ``name`` (validation and clean-train scores are optional)."""
        return bool(self.records) and all(getattr(r, name) is not None for r in self.records)

    def kept(self) -> int:
        """The epoch, counted from 1, whose weights the run ended with."""
        return len(self.records) if self.kept_index is None else self.kept_index + 1

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
        """One line, as learning curves are usually read (epochs counted from 1, as the curves are).

        still improving: the best validation loss is among the last 5 epochs and the loss falls by
        more than 1% of itself per epoch; overfitting: validation loss is over 1.3x the training
        loss and 5% above its best (or rising); underfitting: training and validation accuracy
        both below ``fit_accuracy``; otherwise converged. (With augmentation or mixing the
        training numbers come from the augmented batches, so they read high in loss and low in
        accuracy; the rules lean on validation for that reason, and the underfitting rule reads the
        clean training accuracy when the records have it.)
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
                    f"(epoch {best + 1}); regularize more or stop earlier")
        clean = last.train_clean_accuracy is not None
        train_accuracy = last.train_clean_accuracy if clean else last.train_accuracy
        if train_accuracy < fit_accuracy and last.val_accuracy < fit_accuracy:
            return (f"underfitting: training accuracy{' (clean)' if clean else ''} {train_accuracy:.1%}, validation "
                    f"{last.val_accuracy:.1%}; use a bigger model, train longer or regularize less")
        return f"converged: best validation loss {val[best]:.4g} at epoch {best + 1}"


def train_batches_label(history: History) -> str:
    """What the training-batch curve is: on augmented batches or not (the other curves are on clean data)."""
    if history.augmented is None:
        return "train (training batches)"
    return "train (augmented batches)" if history.augmented else "train (unaugmented batches)"


TRAIN_CLEAN, VALIDATION = "train (clean)", "validation (clean)"
_STYLES = {"batches": ":", "clean": "-", "validation": "--"}


def curve_series(histories: dict[str, History]) -> list[dict]:
    """Every curve the PNG draws, labelled: run, series, metric, epochs (from 1) and values (accuracy in %)."""
    series = []
    for name, history in histories.items():
        epochs, kept = list(range(1, len(history.records) + 1)), history.kept()
        columns = [(train_batches_label(history), "train"), (TRAIN_CLEAN, "train_clean"), (VALIDATION, "val")]
        for label, prefix in columns:
            if prefix != "train" and not history.has(f"{prefix}_loss"):
                continue
            for metric, column, scale in (("loss", f"{prefix}_loss", 1.0),
                                          ("accuracy %", f"{prefix}_accuracy", 100.0)):
                series.append({"run": name, "series": label, "metric": metric, "epoch": epochs,
                               "values": [scale * v for v in history.column(column).tolist()],
                               "kept_epoch": kept})
        if history.has("strength"):
            series.append({"run": name, "series": "strength", "metric": "strength", "epoch": epochs,
                           "values": history.column("strength").tolist(), "kept_epoch": kept})
            series.append({"run": name, "series": f"{history.records[0].signal_name} read by AdaptiveStrength "
                           "(smoothed)", "metric": "strength", "epoch": epochs,
                           "values": history.column("signal").tolist(), "kept_epoch": kept})
    return series


def learning_curve_figure(histories: dict[str, History], title: str = ""):
    """The figure ``plot_learning_curves`` saves: loss and accuracy (%) per epoch, counted from 1 with integer
    ticks; one colour per run; training batches dotted, the clean training split solid, validation dashed;
    the kept epoch's clean scores marked and written (the numbers ``kept_epoch_table`` reports)."""
    require("matplotlib", "learning curves").use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    series = curve_series(histories)
    adaptive = any(s["series"] == "strength" for s in series)
    figure, axes = plt.subplots(1, 3 if adaptive else 2, figsize=(17 if adaptive else 12, 4.6))
    panels = {"loss": axes[0], "accuracy %": axes[1], "strength": axes[2] if adaptive else None}
    colours = {name: f"C{index}" for index, name in enumerate(histories)}
    for entry in series:
        axis, colour = panels[entry["metric"]], colours[entry["run"]]
        if entry["metric"] == "strength":
            style = "-" if entry["series"] == "strength" else ":"
        else:
            style = _STYLES["validation" if entry["series"] == VALIDATION else
                            "clean" if entry["series"] == TRAIN_CLEAN else "batches"]
        axis.plot(entry["epoch"], entry["values"], color=colour, linestyle=style, linewidth=1.2,
                  label=f"{entry['run']}: {entry['series']}")
        if entry["series"] in (TRAIN_CLEAN, VALIDATION) and entry["metric"] == "accuracy %":
            kept = entry["epoch"].index(entry["kept_epoch"])
            value = entry["values"][kept]
            axis.plot([entry["kept_epoch"]], [value], marker="o", color=colour, markersize=4)
            axis.annotate(f"{value:.1f}", (entry["kept_epoch"], value), textcoords="offset points",
                          xytext=(3, 3 if entry["series"] == TRAIN_CLEAN else -9), fontsize=7, color=colour)
    panels["loss"].set(xlabel="epoch", ylabel="loss (cross-entropy)", title="loss")
    panels["accuracy %"].set(xlabel="epoch", ylabel="accuracy %",
                             title="accuracy (dots: the epoch whose weights the run kept)")
    if adaptive:
        panels["strength"].set(xlabel="epoch", ylabel="strength; the signal it follows (legend)",
                               title="augmentation strength")
        panels["strength"].legend(fontsize=7)
    for axis in axes:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.margins(x=0.08)  # room for the kept epoch's numbers
        axis.grid(alpha=0.3)
    # one legend column per kind of curve, the runs down each column
    entries = sorted(zip(*panels["accuracy %"].get_legend_handles_labels()),
                     key=lambda entry: (_kind(entry[1]), list(histories).index(entry[1].rsplit(": ", 1)[0])))
    kinds = len({_kind(label) for _, label in entries})
    figure.legend([h for h, _ in entries], [label for _, label in entries], loc="lower center", ncol=kinds,
                  fontsize=8, frameon=False)
    drawn = {entry["series"] for entry in series}
    key = "; ".join(["training batches dotted (as trained on)"] +
                    (["clean training split solid"] if TRAIN_CLEAN in drawn else []) +
                    (["validation dashed"] if VALIDATION in drawn else []))
    figure.suptitle("\n".join(filter(None, [title, f"{key} (clean: no augmentation, no smoothing)"])), fontsize=10)
    rows = -(-len(entries) // kinds)
    figure.tight_layout(rect=(0, 0.035 * rows + 0.01, 1, 1))
    return figure


def _kind(label: str) -> int:
    """A curve's legend column: training batches, clean training split, validation."""
    series = label.rsplit(": ", 1)[1]
    return 1 if series == TRAIN_CLEAN else 2 if series == VALIDATION else 0


def plot_learning_curves(histories: dict[str, History], path: str | pathlib.Path, title: str = "",
                         test_curves: dict[str, list[float]] | None = None,
                         test_label: str = "test accuracy") -> pathlib.Path:
    """Save ``learning_curve_figure`` as a PNG, and every curve it draws, labelled, as JSON beside it
    (``<name>.json``): the numbers behind the picture, for tables and checks. ``test_curves`` (run -> a
    fraction per epoch) are drawn dash-dotted on the accuracy panel: for the picture only, never to choose."""
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = learning_curve_figure(histories, title)
    series = curve_series(histories)
    if test_curves:
        panel = figure.axes[1]
        for index, run in enumerate(histories):
            values = [100 * value for value in test_curves[run]]
            epochs = list(range(1, len(values) + 1))
            panel.plot(epochs, values, color=f"C{index}", linestyle="-.", linewidth=1.2, label=f"{run}: {test_label}")
            series.append({"run": run, "series": test_label, "metric": "accuracy %", "epoch": epochs,
                           "values": values, "kept_epoch": histories[run].kept()})
        panel.legend(handles=panel.lines[-len(histories):], fontsize=7, loc="lower right", title="dash-dotted",
                     title_fontsize=7)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    path.with_suffix(".json").write_text(curves_json(title, series))
    return path


def curves_json(title: str, series: list[dict]) -> str:
    """The curves' data, one series a line, values to 4 decimals (null where none was read, e.g. the signal of an
    AdaptiveStrength holding): a 1,500-epoch run stays readable and small."""
    lines = ",\n".join(json.dumps({**entry, "values": [None if math.isnan(v) else round(v, 4)
                                                        for v in entry["values"]]}) for entry in series)
    return f'{{"title": {json.dumps(title)}, "series": [\n{lines}\n]}}\n'


def kept_epoch_table(histories: dict[str, History]) -> list[str]:
    """Markdown: each plotted run's scores at its kept epoch, the points the curves mark (accuracy in %)."""
    lines = ["| run | kept epoch | train % (batches as trained) | train % (clean) | validation % (clean) |",
             "|---|---:|---:|---:|---:|"]
    for name, history in histories.items():
        epoch = history.kept()
        kept = history.records[epoch - 1]
        cells = [kept.train_accuracy, kept.train_clean_accuracy, kept.val_accuracy]
        shown = [f"{100 * value:.1f}" if value is not None else "" for value in cells]
        batches = train_batches_label(history).removeprefix("train (").removesuffix(")")
        lines.append(f"| {name} | {epoch} | {shown[0]} ({batches}) | {shown[1]} | {shown[2]} |")
    return lines


def seeds_text(count: int) -> str:
    """'1 seed', '3 seeds'."""
    return f"{count} seed" if count == 1 else f"{count} seeds"


def percent_mean_sd(values: list[float]) -> str:
    """Accuracies (fractions) as "mean ± sd" in percent, for the experiments' tables; one value as itself
    (one seed has no spread to report)."""
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def mean_sd_header(count: int) -> str:
    """The column note that goes with ``percent_mean_sd``: "(mean ± sd)" for several seeds, nothing for one."""
    return "" if count == 1 else " (mean ± sd)"
