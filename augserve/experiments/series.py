"""``augserve train --dataset arrowhead,osuleaf,...``: does augmentation close the gap on small UCR sets,
at which strength, and does a strength that follows the gap find it without tuning?

Per dataset and seed: a small FCN trained plainly; regularized at fixed augmentation strengths
(time-series augmentation + mixup/cutmix along time, decoupled weight decay, dropout, label
smoothing, early stopping on a validation split carved from the training set); and regularized
with ``AdaptiveStrength``; each preset, and each of the recipe's regularizers, alone (the chapter's
table). Every run of a seed shares the same fit/validation split and the same
initial weights; test accuracy is on the archive's own test split.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import statistics
from dataclasses import dataclass, replace

import torch
from torch.utils.data import DataLoader

from augserve.client.loader import IndexedDataset, RemoteAugment
from augserve.experiments.models import fcn
from augserve.experiments.runs import run_all
from augserve.experiments.ucr import PUBLISHED_SOURCE, SeriesSplit, load_ucr, validation_split
from augserve.in_process import InProcessAugmenter
from augserve.pipeline import Pipeline
from augserve.trainer.adaptive import AdaptiveStrength, chance_accuracy
from augserve.trainer.decay import param_groups
from augserve.trainer.early_stopping import EarlyStopping
from augserve.trainer.losses import SoftTargetCrossEntropy
from augserve.trainer.monitor import (History, kept_epoch_table, mean_sd_header, percent_mean_sd, plot_learning_curves,
                                      seeds_text)
from augserve.trainer.schedule import warmup_cosine_scheduler
from augserve.trainer.trainer import Trainer

SERIES_PIPELINE = [
    {"op": "jitter", "sigma": 0.03},
    {"op": "scaling", "sigma": 0.1},
    {"op": "magnitude_warp", "sigma": 0.2, "knots": 4},
    {"op": "time_warp", "sigma": 0.2, "knots": 4},
    {"op": "window_warp", "ratio": 0.1, "scales": [0.5, 2.0]},
    {"op": "mix", "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "prob": 0.5},
]


@dataclass(frozen=True)
class Recipe:
    """Everything a run is trained with besides its dataset, seed and configuration (one for every dataset)."""

    pipeline: tuple = tuple(SERIES_PIPELINE)
    width: int = 32  # FCN filters: width, 2 * width, width (128 in the paper)
    batch_size: int = 16
    steps: int = 3000  # optimizer steps: the epoch budget is what this many take on the set (augmented data learns slower)
    learning_rate: float = 3e-3  # AdamW, cosine decay to 0 over the budget after a 5-epoch warmup
    weight_decay: float = 0.01  # regularized runs only, on conv/linear weights
    dropout: float = 0.2
    label_smoothing: float = 0.1
    patience: float = 0.5  # early stopping: this fraction of the budget without a better validation loss; a run
    # cut sooner keeps weights the cosine schedule has not annealed yet
    validation_fraction: float = 0.25
    adaptive: tuple = (("target_gap", 0.1), ("step", 0.02), ("start", 0.0), ("limits", (0.0, 2.0)), ("ema", 0.8))
    # "adaptive views": the strength at which augmented validation views score this share of the clean ones
    adaptive_views: tuple = (("target_ratio", 0.9), ("passes", 4), ("step", 0.02), ("start", 0.0),
                             ("limits", (0.0, 2.0)), ("ema", 0.8))

    def epochs(self, samples: int) -> int:
        """The epoch budget for a fit set of ``samples``: ``steps`` optimizer steps."""
        return math.ceil(self.steps / math.ceil(samples / self.batch_size))


RECIPE = Recipe()


def _loader(dataset, shuffle: bool, seed: int, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))


ADAPTIVE = ("adaptive", "adaptive views")  # AdaptiveStrength on the gap, and on augmented validation views
VIEW_SEED = 1 << 40  # added to a run's seed for its validation views
PRESET = "preset "  # a configuration "preset <name>": plain's loop and budget, the batches augmented by <name> alone
ALONE = " alone"  # a configuration "<regularizer> alone": plain's loop and budget with that one regularizer added
REGULARIZERS = ("augmentation", "mixing", "decay", "dropout", "smoothing", "early stopping")  # the recipe's parts


def configurations(strengths: tuple[float, ...], presets: tuple[str, ...] = (),
                   adaptive: tuple[str, ...] = ADAPTIVE, alone: tuple[str, ...] = ()) -> list[str]:
    """plain; the regularized recipe at each strength and by each of ``adaptive`` (none without strengths); each
    preset alone; each of the recipe's regularizers alone."""
    regularized = [*(f"strength {s:g}" for s in strengths), *adaptive] if strengths else []
    return ["plain", *regularized, *(f"{PRESET}{name}" for name in presets), *(name + ALONE for name in alone)]


@dataclass(frozen=True)
class Ingredients:
    """What a configuration adds to plain's loop: the batches' augmentation and the recipe's other regularizers."""

    pipeline: list | str | None = None  # steps or a preset name; None: the batches as they are
    strength: float | None = None  # None: as specified, or adaptive
    weight_decay: float = 0.0
    dropout: float = 0.0
    label_smoothing: float = 0.0
    early_stopping: bool = False


def ingredients(configuration: str, recipe: Recipe) -> Ingredients:
    """plain: nothing; a preset: its augmentation; a strength or adaptive: the whole recipe; a regularizer alone:
    that part of the recipe (augmentation: its steps but mixing, at strength 1; mixing: its mix step)."""
    steps = list(recipe.pipeline)
    whole = Ingredients(steps, None, recipe.weight_decay, recipe.dropout, recipe.label_smoothing, True)
    parts = {"augmentation": Ingredients([s for s in steps if s["op"] != "mix"]),
             "mixing": Ingredients([s for s in steps if s["op"] == "mix"]),
             "decay": Ingredients(weight_decay=recipe.weight_decay), "dropout": Ingredients(dropout=recipe.dropout),
             "smoothing": Ingredients(label_smoothing=recipe.label_smoothing),
             "early stopping": Ingredients(early_stopping=True)}
    if configuration == "plain":
        return Ingredients()
    if configuration.startswith(PRESET):
        return Ingredients(configuration.removeprefix(PRESET))
    if configuration.endswith(ALONE):
        return parts[configuration.removesuffix(ALONE)]
    if configuration in ADAPTIVE:
        return whole
    return replace(whole, strength=float(configuration.removeprefix("strength ")))


def _augmenter(server: str | None, token: str | None):
    if not server:
        return InProcessAugmenter()
    from augserve.client import Client

    return Client(server, token=token)


def run_series(name: str, seed: int, configuration: str, *, epochs: int | None = None, recipe: Recipe = RECIPE,
               server: str | None = None, token: str | None = None) -> dict:
    """One run: ``configuration`` is 'plain', 'strength S', 'adaptive', 'adaptive views', 'preset <name>' or
    '<regularizer> alone'; ``epochs`` caps the recipe's budget. Returns accuracies and history."""
    torch.set_num_threads(1)  # runs go side by side, one per core
    split = load_ucr(name)
    fit, val = validation_split(split.train, recipe.validation_fraction, seed)
    uses = ingredients(configuration, recipe)
    torch.manual_seed(seed)
    model = fcn(split.channels, split.num_classes, width=recipe.width, dropout=uses.dropout)
    optimizer = torch.optim.AdamW(param_groups(model, uses.weight_decay), lr=recipe.learning_rate)
    epochs = min(recipe.epochs(len(fit)), epochs or math.inf)
    per_epoch = math.ceil(len(fit) / recipe.batch_size)
    scheduler = warmup_cosine_scheduler(optimizer, total_steps=epochs * per_epoch,
                                        warmup_steps=min(5, max(epochs // 10, 1)) * per_epoch)

    def loader(dataset, shuffle: bool = False) -> DataLoader:
        return _loader(dataset, shuffle, seed, recipe.batch_size)

    train, adaptive = loader(fit, True), None
    if uses.pipeline is not None:
        augmenter = _augmenter(server, token)
        train = RemoteAugment(loader(IndexedDataset(fit), True), augmenter, uses.pipeline, seed=seed,
                              num_classes=split.num_classes, strength=uses.strength)
        if configuration == "adaptive":
            adaptive = AdaptiveStrength(train, **dict(recipe.adaptive))
        elif configuration == "adaptive views":  # other draws than training's: the seed's second stream
            views = RemoteAugment(loader(IndexedDataset(val)), augmenter, uses.pipeline,
                                  seed=seed + VIEW_SEED, num_classes=split.num_classes)
            adaptive = AdaptiveStrength(train, views=views, chance=chance_accuracy(val.tensors[1]),
                                        **dict(recipe.adaptive_views))
    stopping = EarlyStopping(max(1, round(recipe.patience * epochs)), restore_best=False) if uses.early_stopping \
        else None
    trainer = Trainer(model, optimizer, SoftTargetCrossEntropy(label_smoothing=uses.label_smoothing), device="cpu",
                      scheduler=scheduler, early_stopping=stopping, callbacks=[adaptive] if adaptive else [],
                      progress=False)
    # seed 0's runs are drawn as curves: they also score the clean fit series after every epoch
    history = trainer.fit(train, loader(val), epochs=epochs, train_eval=loader(fit) if seed == 0 else None)
    history.augmented = uses.pipeline is not None
    _, train_accuracy = trainer.evaluate(loader(fit))
    _, test_accuracy = trainer.evaluate(loader(split.test))
    return {"dataset": name, "seed": seed, "configuration": configuration, "epochs": len(history.records),
            "train_accuracy": train_accuracy, "test_accuracy": test_accuracy, "gap": train_accuracy - test_accuracy,
            "mean_strength": None if adaptive is None else adaptive.mean_strength,
            "at_limit": None if adaptive is None else adaptive.at_limit,
            "history": history}


def dataset_table(split: SeriesSplit, runs: list[dict], configs: list[str]) -> list[str]:
    spread = mean_sd_header(len({r["seed"] for r in runs}))
    lines = [f"| configuration | test acc %{spread} | per seed | train acc % (clean){spread} | gap (train - test) "
             "| epochs |", "|---|---:|---|---:|---:|---:|"]
    for config in configs:
        chosen = sorted((r for r in runs if r["configuration"] == config), key=lambda r: r["seed"])
        strengths = ""
        if config in ADAPTIVE:
            strengths = f" (mean strength {statistics.mean(r['mean_strength'] for r in chosen):.2f})"
        per_seed = " ".join(f"{100 * r['test_accuracy']:.1f}" for r in chosen)
        lines.append(f"| {config}{strengths} | {percent_mean_sd([r['test_accuracy'] for r in chosen])} | {per_seed} | "
                     f"{percent_mean_sd([r['train_accuracy'] for r in chosen])} | {percent_mean_sd([r['gap'] for r in chosen])} | "
                     f"{statistics.mean(r['epochs'] for r in chosen):.0f} |")
    if split.published_accuracy is not None:
        lines.append(f"| published FCN (128-256-128 filters, all training data, 2000 epochs) | "
                     f"{100 * split.published_accuracy:.1f} | | | | |")
    return lines


def verdicts(runs: list[dict], configs: list[str]) -> list[str]:
    """The goals, read off the runs of one dataset: each fixed strength, adaptive strength, preset and regularizer
    alone against plain, seed by seed, and adaptive against the best fixed strength (and strength 1 when it ran)."""
    def accuracies(config: str) -> list[float]:
        return [r["test_accuracy"] for r in sorted(runs, key=lambda r: r["seed"]) if r["configuration"] == config]

    def mean(config: str) -> float:
        return statistics.mean(accuracies(config))

    def against_plain(config: str) -> str:
        pairs = list(zip(accuracies(config), plain))
        ties = sum(a == b for a, b in pairs)
        return (f"- {config} beats plain in {sum(a > b for a, b in pairs)} of {seeds_text(len(plain))}"
                f"{f' ({ties} tied)' if ties else ''}, by {100 * (mean(config) - mean('plain')):+.1f} points on average")

    plain, fixed = accuracies("plain"), [c for c in configs if c.startswith("strength")]
    lines = [against_plain(config) for config in configs
             if config.startswith(("strength", PRESET, "adaptive")) or config.endswith(ALONE)]
    if fixed:
        best = max(fixed, key=mean)
        lines.append(f"- best fixed strength: {best} ({100 * mean(best):.1f}%)")
        if "adaptive" in configs:
            against_one = f", {100 * (mean('adaptive') - mean('strength 1')):+.1f} from strength 1" \
                if "strength 1" in fixed else ""
            lines.append(f"- adaptive {100 * mean('adaptive'):.1f}% ({100 * (mean('adaptive') - mean(best)):+.1f} "
                         f"points from {best}{against_one})")
        if "adaptive views" in configs:
            near = sum(a >= b - 0.01 for a, b in zip(accuracies("adaptive views"), accuracies(best)))
            at_limit = max(r["at_limit"] for r in runs if r["configuration"] == "adaptive views")
            lines.append(f"- adaptive views {100 * mean('adaptive views'):.1f}% "
                         f"({100 * (mean('adaptive views') - mean(best)):+.1f} points from {best}), no more than 1 "
                         f"point below it in {near} of {seeds_text(len(plain))}; at a strength limit for at most "
                         f"{at_limit:.0%} of a run's epochs that read a signal")
    return lines


def across_sets(runs: list[dict], datasets: list[str], configs: list[str]) -> list[str]:
    """Mean test accuracy per set and configuration, then what each configuration did against plain over the
    sets: its mean difference, on how many sets its mean was higher, and in how many (set, seed) pairs it
    scored higher than plain with the same seed."""
    def mean(name: str, config: str) -> float:
        return 100 * statistics.mean(r["test_accuracy"] for r in runs
                                     if r["dataset"] == name and r["configuration"] == config)

    lines = [f"| set | {' | '.join(configs)} |", f"|---|{'---:|' * len(configs)}"]
    lines += [f"| {name} | {' | '.join(f'{mean(name, c):.1f}' for c in configs)} |" for name in datasets]
    differences = {c: [mean(name, c) - mean(name, "plain") for name in datasets] for c in configs}
    others = [c for c in configs if c != "plain"]
    lines.append(f"| **mean difference from plain** | | {' | '.join(f'{statistics.mean(differences[c]):+.1f}' for c in others)} |")
    lines.append(f"| **sets better than plain** | | "
                 f"{' | '.join(f'{sum(d > 0 for d in differences[c])} of {len(datasets)}' for c in others)} |")
    score = {(r["dataset"], r["seed"], r["configuration"]): r["test_accuracy"] for r in runs}
    pairs = [(name, seed) for name, seed, config in score if config == "plain" and name in datasets]
    wins = {c: sum(score[name, seed, c] > score[name, seed, "plain"] for name, seed in pairs) for c in others}
    lines.append(f"| **seeds better than plain** | | {' | '.join(f'{wins[c]} of {len(pairs)}' for c in others)} |")
    return lines


def run_series_experiments(datasets: list[str], *, out: str | pathlib.Path, seeds: int = 5, epochs: int | None = None,
                           strengths: tuple[float, ...] = (0.5, 1.0, 2.0), presets: tuple[str, ...] = (),
                           adaptive: tuple[str, ...] = ADAPTIVE, alone: tuple[str, ...] = (), workers: int = 2,
                           recipe: Recipe = RECIPE, server: str | None = None, token: str | None = None,
                           progress: bool = True, resume: bool = False) -> str:
    """Every dataset x configuration x seed, ``workers`` runs at a time; writes summary.md, results.json (as each
    run finishes, so an interrupted run keeps what it finished) and one learning-curve PNG per dataset under
    ``out``; returns the summary."""
    if seeds < 1 or (epochs is not None and epochs < 1) or workers < 1 or not (strengths or presets or alone):
        raise ValueError(f"expected --seeds >= 1, --epochs >= 1, --workers >= 1 and a strength, a preset or a "
                         f"regularizer alone, got {seeds}, {epochs}, {workers}, {strengths}, {presets}, {alone}")
    if not set(alone) <= set(REGULARIZERS):
        raise ValueError(f"alone: expected some of {', '.join(REGULARIZERS)}, got {', '.join(alone)}")
    splits = {name: load_ucr(name) for name in datasets}  # refuses unknown names before any work
    for strength in strengths:  # and strengths the pipeline cannot take
        Pipeline.from_spec(list(recipe.pipeline)).at_strength(strength)
    for name in presets:  # and presets that are not for series
        if Pipeline.from_spec(name).modality != "timeseries":
            raise ValueError(f"preset {name!r} is for {Pipeline.from_spec(name).modality} data, not series")
    configs = configurations(strengths, presets, adaptive, alone)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    calls = [functools.partial(run_series, name, seed, config, epochs=epochs, recipe=recipe, server=server, token=token)
             for name in datasets for seed in range(seeds) for config in configs]
    runs = run_all(calls, workers=workers, results=out / "results.json", progress=progress, resume=resume)
    gap_setting, views_setting = (", ".join(f"{key}={value}" for key, value in setting)
                                  for setting in (recipe.adaptive, recipe.adaptive_views))
    described = {"adaptive": f"adaptive: regularized with `AdaptiveStrength({gap_setting})` (the gap read from the "
                             "training batches), the same setting for every dataset. ",
                 "adaptive views": f"adaptive views: regularized with `AdaptiveStrength(views=..., {views_setting})`: "
                                   "the signal is accuracy on augmented views of the validation split (at the strength "
                                   "just trained with, other draws each pass) over clean validation accuracy, both "
                                   "above chance (the split's largest class share). "}
    budget = f"at most {epochs} epochs" if epochs else f"{recipe.steps} optimizer steps (the epochs column)"
    lines = [f"# augserve train: {', '.join(datasets)}, {seeds_text(seeds)}", "",
             f"FCN ({recipe.width}-{2 * recipe.width}-{recipe.width} filters) on each set's own train/test split; "
             f"{recipe.validation_fraction:.0%} of the training set (stratified, per seed) is the validation split, "
             f"the rest is fit on. Every run: AdamW (lr {recipe.learning_rate:g}, batch {recipe.batch_size}), "
             f"{budget}, warmup then cosine decay to 0. plain: no decay, nothing else, the whole budget. "
             + (f"regularized: augmentation {'from the server at ' + server if server else 'in process'} "
             f"(`{json.dumps(list(recipe.pipeline))}` at the strength named), decay {recipe.weight_decay:g} on "
             f"conv/linear weights, dropout {recipe.dropout:g} before the classifier, label smoothing "
             f"{recipe.label_smoothing:g}, early stopping on validation loss (patience {recipe.patience:.0%} of the "
             "budget; the last weights are kept: on validation splits of 9 to 50 series the best-loss epoch is "
             "mostly noise). " + "".join(described[config] for config in adaptive) if strengths else "")
             + "Accuracies in %; test on the archive's test split; train on the fit part, unaugmented; epochs as "
             "run (early stopping ends some sooner)."
             + (" preset <name>: plain's loop and budget (no decay, dropout, smoothing or early stopping) on batches "
                "augmented by that preset alone." if presets else "")
             + (f" <regularizer> alone: plain's loop and budget with one part of the regularized recipe (`"
                f"{json.dumps(list(recipe.pipeline))}`, decay {recipe.weight_decay:g}, dropout {recipe.dropout:g}, "
                f"smoothing {recipe.label_smoothing:g}, early stopping at patience {recipe.patience:.0%}): "
                "augmentation is its steps but mix, at strength 1; mixing its mix step." if alone else ""), "",
             f"Published accuracy: {PUBLISHED_SOURCE}.", ""]
    if len(datasets) > 1:
        lines += ["## Across the sets (test accuracy %, mean of the seeds)", "", *across_sets(runs, datasets, configs),
                  ""]
    for name in datasets:
        chosen = [r for r in runs if r["dataset"] == name]
        split, picture = splits[name], f"{name.replace(':', '-')}_curves.png"  # ucr:<Name>: no colon in a file name
        drawn = ("plain", "strength 1", *ADAPTIVE, *(PRESET + p for p in presets), *(name + ALONE for name in alone))
        curves: dict[str, History] = {config: r["history"] for config in drawn
                                      for r in chosen if r["seed"] == 0 and r["configuration"] == config}
        plot_learning_curves(curves, out / picture, f"{name}, seed 0: {', '.join(curves)}")
        lines += [f"## {name} ({len(split.train)} train / {len(split.test)} test, {split.num_classes} classes, "
                  f"length {split.train.tensors[0].shape[-1]})", "", *dataset_table(split, chosen, configs), "",
                  *verdicts(chosen, configs), "",
                  f"Learning curves (seed 0): `{picture}` (its data: `{picture.removesuffix('.png')}.json`). "
                  "Accuracy on the training batches as trained on (augmented, for every configuration but plain) "
                  "is drawn dotted beside the clean fit series (solid) and validation (dashed); the dots mark the "
                  "last epoch, whose weights each run kept, and are these numbers (the table's train accuracy is "
                  "the clean one):", "", *kept_epoch_table(curves), ""]
    summary = "\n".join(lines)
    (out / "summary.md").write_text(summary)
    return summary
