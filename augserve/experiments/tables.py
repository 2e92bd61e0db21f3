"""``augserve train --dataset tables``: does SMOTE fix a 10:1 imbalance, and do the tabular steps help on 200 rows?

Imbalanced (scikit-learn's breast-cancer set, offline): per seed a stratified train/test split (``test_fraction``
held out, untouched), then the training split's minority class (malignant) subsampled, drawn by the seed, to one
row per ``imbalance`` rows of the majority; features standardized on those training rows. Arms, the same in
everything but the rows each epoch trains on: plain (the imbalanced rows as they are), smote (``Smote.epoch(e)``:
the minority raised to the majority's count with fresh synthetic rows every epoch), feature noise (the imbalanced
rows through ``feature_noise`` at its defaults, std from the training table registered with ``table_stats``), and
imbalanced-learn's ``SMOTE.fit_resample`` once per seed (one fixed resampled copy, a reference row). Scored by
balanced accuracy on the test split. Goal: smote better than plain in every seed.

Small data (scikit-learn's digits as 64 features, offline): per seed 200 training rows (stratified, drawn by the
seed), the other 1,597 the test; plain vs ``feature_noise``, ``feature_mask`` (fill marginal) and ``swap_noise``,
each at its defaults. Scored by accuracy on the test rows.

Every run: an MLP (breast-cancer: one hidden layer of 16 for 30 epochs, chosen on development seeds by
``augserve train --dataset tables-dev``; digits: two of 32 for 100 epochs), AdamW with cosine decay to 0, the
last epoch's weights kept; no validation split, nothing chosen on the test (which is also scored after every
epoch, for the curves only). Pipelines run in process on every training batch with the keys ``sample_keys(index,
epoch)``, as a server would run them.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from augserve import table_stats
from augserve.experiments.runs import run_all, without_history, write_json
from augserve.pipeline import Pipeline
from augserve.random import sample_keys
from augserve.smote import Smote, class_counts
from augserve.trainer.losses import SoftTargetCrossEntropy
from augserve.trainer.monitor import History, mean_sd_header, percent_mean_sd, plot_learning_curves, seeds_text
from augserve.trainer.schedule import warmup_cosine_scheduler
from augserve.trainer.trainer import Trainer

IMBALANCED, SMALL = "breast-cancer", "digits-200"
STATS = "stats"  # in an arm's steps: the seed's training table (registered with table_stats) goes here
# Each part's arms: None trains on the rows as they are; "smote"/"imblearn" resample; a list runs those steps
# (each at its defaults, chosen before any run) on every training batch.
ARMS: dict[str, dict[str, list | str | None]] = {
    IMBALANCED: {"plain": None, "smote": "smote", "feature_noise": [{"op": "feature_noise", "stats": STATS}],
                 "imblearn SMOTE (one copy)": "imblearn"},
    SMALL: {"plain": None, "feature_noise": [{"op": "feature_noise", "stats": STATS}],
            "feature_mask": [{"op": "feature_mask", "fill": "marginal"}], "swap_noise": [{"op": "swap_noise"}]},
}
METRIC = {IMBALANCED: "balanced accuracy", SMALL: "accuracy"}


@dataclass(frozen=True)
class TableRecipe:
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 3e-3  # AdamW, cosine decay to 0 over the run's steps
    weight_decay: float = 0.01
    hidden: tuple[int, ...] = (32, 32)
    test_fraction: float = 0.3  # breast-cancer: held out per seed, stratified, untouched
    imbalance: int = 10  # breast-cancer: majority rows per minority row in the training split
    k_neighbors: int = 5  # SMOTE, both implementations
    small_rows: int = 200  # digits: training rows per seed, stratified; the rest is the test


# breast-cancer's model and budget: the candidate of `augserve train --dataset tables-dev` (bench/train/tables-dev/)
# with the best balanced accuracy over both arms on development seeds; digits keeps the first round's.
RECIPES = {IMBALANCED: TableRecipe(epochs=30, hidden=(16,)), SMALL: TableRecipe()}
DEVELOPMENT_SEEDS = range(100, 200)  # tables-dev's; a test run refuses them


@dataclass
class TableSplit:
    name: str
    x_train: np.ndarray  # float32, standardized on the training rows
    y_train: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    minority: int | None = None  # the subsampled class (breast-cancer)

    def describe(self) -> dict:
        return {"train_rows": len(self.y_train), "test_rows": len(self.y_test),
                "train_counts": class_counts(self.y_train), "test_counts": class_counts(self.y_test)}


def _counts(counts: dict) -> str:
    """Rows per class as ``{0: 40, 1: 357}``, whether the keys are ints or, read back from a journal, strings."""
    return "{" + ", ".join(f"{label}: {count}" for label, count in counts.items()) + "}"


def standardized(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both standardized by the training rows' mean and population std (a constant column: divided by 1)."""
    mean, std = x_train.mean(0), x_train.std(0)
    std = np.where(std > 0, std, 1.0)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def imbalanced_split(seed: int, recipe: TableRecipe = RECIPES[IMBALANCED]) -> TableSplit:
    """breast-cancer: stratified train/test by ``seed``, then the training minority subsampled (by ``seed``) to
    round(majority / imbalance) rows; the test split untouched."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=recipe.test_fraction, stratify=y,
                                                        random_state=seed)
    counts = class_counts(y_train)
    majority, minority = max(counts, key=counts.get), min(counts, key=counts.get)
    keep = max(2, round(counts[majority] / recipe.imbalance))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.flatnonzero(y_train == minority), keep, replace=False)
    rows = np.sort(np.concatenate([np.flatnonzero(y_train == majority), chosen]))
    x_train, x_test = standardized(x_train[rows], x_test)
    return TableSplit(IMBALANCED, x_train, y_train[rows].astype(np.int64), x_test, y_test.astype(np.int64), 2,
                      int(minority))


def small_split(seed: int, recipe: TableRecipe = RECIPES[SMALL]) -> TableSplit:
    """digits (64 pixel features): ``small_rows`` stratified training rows drawn by ``seed``, the rest the test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, train_size=recipe.small_rows, stratify=y,
                                                        random_state=seed)
    x_train, x_test = standardized(x_train, x_test)
    return TableSplit(SMALL, x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), 10)


SPLITS: dict[str, Callable[[int, TableRecipe], TableSplit]] = {IMBALANCED: imbalanced_split, SMALL: small_split}


def table_mlp(features: int, num_classes: int, hidden: tuple[int, ...] = (32, 32)) -> nn.Module:
    layers: list[nn.Module] = []
    for width_in, width_out in zip((features, *hidden), hidden):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear((features, *hidden)[-1], num_classes))


class TableBatches:
    """Training batches, one epoch per pass: ``rows(epoch)`` -> the epoch's (x, y), shuffled by (seed, epoch), each
    batch run through ``pipeline`` (if any) with the keys ``sample_keys(index, epoch)``; yields (x, y)."""

    def __init__(self, rows: Callable[[int], tuple[np.ndarray, np.ndarray]], size: int, *, seed: int,
                 batch_size: int, pipeline: Pipeline | None = None):
        self.rows, self.size, self.seed, self.batch_size, self.pipeline = rows, size, seed, batch_size, pipeline
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        x, y = (torch.from_numpy(np.ascontiguousarray(a)) for a in self.rows(epoch))
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            batch = x[index]
            if self.pipeline is not None:
                batch = self.pipeline(batch, seed=self.seed, keys=sample_keys(index, epoch)).x
            yield batch, y[index]


def arm_steps(arm, table: str) -> list[dict] | None:
    """An arm's steps with the seed's training table named where they read column statistics."""
    if not isinstance(arm, list):
        return None
    return [{key: table if value == STATS else value for key, value in step.items()} for step in arm]


def training_batches(split: TableSplit, arm: str, seed: int, recipe: TableRecipe) -> TableBatches:
    kind = ARMS[split.name][arm]
    fixed = (split.x_train, split.y_train)
    common = {"seed": seed, "batch_size": recipe.batch_size}
    if kind == "smote":
        smote = Smote(split.x_train, split.y_train, k_neighbors=recipe.k_neighbors, seed=seed)
        return TableBatches(lambda epoch: smote.epoch(epoch)[:2], len(smote), **common)
    if kind == "imblearn":
        from imblearn.over_sampling import SMOTE

        x, y = SMOTE(k_neighbors=recipe.k_neighbors, random_state=seed).fit_resample(*fixed)
        return TableBatches(lambda epoch: (x.astype(np.float32), y), len(y), **common)
    pipeline = None
    if kind is not None:
        table = f"{split.name}-train-seed{seed}"
        table_stats.register(table, split.x_train)
        pipeline = Pipeline.from_spec(arm_steps(kind, table))
    return TableBatches(lambda epoch: fixed, len(split.y_train), pipeline=pipeline, **common)


def scores(model: nn.Module, x: np.ndarray, y: np.ndarray, minority: int | None = None) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x)).argmax(1).numpy()
    out = {"accuracy": accuracy_score(y, predicted), "balanced_accuracy": balanced_accuracy_score(y, predicted)}
    if minority is not None:
        out["minority_recall"] = recall_score(y, predicted, pos_label=minority)
    return out


class _TestCurve:
    """Callback: the part's metric on the test split after every epoch (for the curves only; nothing is chosen
    by it)."""

    def __init__(self, split: TableSplit):
        self.split, self.values = split, []

    def __call__(self, trainer, record) -> None:
        metric = "balanced_accuracy" if self.split.name == IMBALANCED else "accuracy"
        self.values.append(scores(trainer.model, self.split.x_test, self.split.y_test)[metric])


def run_table(seed: int, part: str, arm: str, *, recipe: TableRecipe | None = None, threads: int = 1) -> dict:
    """One run of ``arm`` on ``part`` (breast-cancer or digits-200) for ``seed``, with the part's recipe unless
    another is given."""
    torch.set_num_threads(threads)
    recipe = recipe or RECIPES[part]
    split = SPLITS[part](seed, recipe)
    train = training_batches(split, arm, seed, recipe)
    torch.manual_seed(seed)
    model = table_mlp(split.x_train.shape[1], split.num_classes, recipe.hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    scheduler = warmup_cosine_scheduler(optimizer, total_steps=recipe.epochs * len(train), warmup_steps=0)
    curve = _TestCurve(split)
    trainer = Trainer(model, optimizer, SoftTargetCrossEntropy(), device="cpu", scheduler=scheduler,
                      callbacks=[curve], progress=False)
    clean = [(torch.from_numpy(split.x_train), torch.from_numpy(split.y_train))]
    started = time.perf_counter()
    history = trainer.fit(train, None, epochs=recipe.epochs, train_eval=clean)
    history.augmented = ARMS[part][arm] is not None
    seconds = time.perf_counter() - started
    return {"seed": seed, "part": part, "arm": arm, "steps": arm_steps(ARMS[part][arm], "<training table>")
            if isinstance(ARMS[part][arm], list) else ARMS[part][arm], **split.describe(),
            "rows_per_epoch": train.size, "optimizer_steps": recipe.epochs * len(train),
            "train_clean_accuracy": history.records[-1].train_clean_accuracy,
            **{f"test_{k}": v for k, v in scores(model, split.x_test, split.y_test, split.minority).items()},
            "seconds": seconds, "test_curve": curve.values, "history": history}


def _by_seed(runs: list[dict], part: str, key: str) -> dict[str, list[float]]:
    chosen = sorted((r for r in runs if r["part"] == part), key=lambda r: r["seed"])
    return {arm: [r[key] for r in chosen if r["arm"] == arm] for arm in ARMS[part]}


def verdicts(runs: list[dict]) -> tuple[bool, list[str]]:
    """(the SMOTE goal met, one sentence per comparison with plain): wins per seed and the mean difference."""
    sentences, met = [], False
    for part, key in ((IMBALANCED, "test_balanced_accuracy"), (SMALL, "test_accuracy")):
        by = _by_seed(runs, part, key)
        for arm in list(ARMS[part])[1:]:
            wins = sum(a > p for a, p in zip(by[arm], by["plain"]))
            lead = 100 * (statistics.mean(by[arm]) - statistics.mean(by["plain"]))
            every = wins == len(by["plain"])
            text = (f"{part}, {arm} against plain ({METRIC[part]}): better in {wins} of "
                    f"{seeds_text(len(by['plain']))}, {lead:+.1f} points on average")
            if part == IMBALANCED and arm == "smote":
                met = every
                text = (f"Goal (smote better than plain in balanced accuracy in every seed): "
                        f"**{'met' if met else 'not met'}**: {text}")
            elif part == SMALL:
                text += f" (better in every seed: **{'yes' if every else 'no'}**)"
            sentences.append(text + ".")
    return met, sentences


def summary_tables(runs: list[dict], part: str) -> list[str]:
    chosen = [r for r in runs if r["part"] == part]
    seeds = sorted({r["seed"] for r in chosen})
    spread, arms = mean_sd_header(len(seeds)), list(ARMS[part])
    key = "test_balanced_accuracy" if part == IMBALANCED else "test_accuracy"
    imbalanced = part == IMBALANCED
    lines = [f"| arm | test {METRIC[part]} %{spread} |" + (f" test accuracy %{spread} | test malignant recall "
                                                               f"%{spread} |" if imbalanced else "")
             + f" train % (clean rows){spread} | rows per epoch | optimizer steps | seconds per run |",
             "|---|---:|" + ("---:|---:|" if imbalanced else "") + "---:|---:|---:|---:|"]
    for arm in arms:
        of = [r for r in chosen if r["arm"] == arm]
        cells = [percent_mean_sd([r[key] for r in of])]
        if imbalanced:
            cells += [percent_mean_sd([r["test_accuracy"] for r in of]),
                      percent_mean_sd([r["test_minority_recall"] for r in of])]
        cells += [percent_mean_sd([r["train_clean_accuracy"] for r in of]), f"{of[0]['rows_per_epoch']:,}",
                  f"{of[0]['optimizer_steps']:,}", f"{statistics.mean(r['seconds'] for r in of):.1f}"]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    value = {(r["seed"], r["arm"]): 100 * r[key] for r in chosen}
    lines += ["", "| seed | " + " | ".join(f"{arm} %" for arm in arms) + " | "
              + " | ".join(f"{arm} - plain" for arm in arms[1:]) + " |",
              "|---:|" + "---:|" * (2 * len(arms) - 1)]
    for seed in seeds:
        lines.append(f"| {seed} | " + " | ".join(f"{value[seed, arm]:.1f}" for arm in arms) + " | "
                     + " | ".join(f"{value[seed, arm] - value[seed, 'plain']:+.1f}" for arm in arms[1:]) + " |")
    return lines


def plot_table_curves(runs: list[dict], part: str, path: pathlib.Path, title: str) -> dict[str, History]:
    """The part's lowest-seed runs as learning curves, with the test metric per epoch; their histories."""
    seed = min(r["seed"] for r in runs if r["part"] == part)
    chosen = {r["arm"]: r for r in runs if r["part"] == part and r["seed"] == seed}
    histories = {arm: chosen[arm]["history"] for arm in ARMS[part]}
    plot_learning_curves(histories, path, title, {arm: chosen[arm]["test_curve"] for arm in histories},
                         f"test {METRIC[part]}")
    return histories


def mlp_text(recipe: TableRecipe) -> str:
    """A recipe's model and schedule in the words of the summaries."""
    return (f"an MLP ({' -> '.join(map(str, recipe.hidden))} hidden, ReLU), AdamW lr {recipe.learning_rate:g} (weight "
            f"decay {recipe.weight_decay:g}, cosine decay to 0, no warmup), batch {recipe.batch_size}, "
            f"{recipe.epochs} epochs")


def run_table_experiments(*, out: str | pathlib.Path, seeds: int = 5, first_seed: int = 0, epochs: int | None = None,
                          workers: int = 2, recipes: dict[str, TableRecipe] | None = None,
                          progress: bool = True, resume: bool = False) -> str:
    """Every part x seed x arm for seeds ``first_seed`` on, ``workers`` runs at a time (one thread each; 1: in this
    process), each part with its recipe (``epochs`` overrides both budgets); writes summary.md, results.json and a
    ``<part>_curves.png`` (+ .json) per part under ``out``; returns the summary."""
    if seeds < 1 or first_seed < 0 or (epochs is not None and epochs < 1) or workers < 1:
        raise ValueError(f"expected --seeds >= 1, --first-seed >= 0, --epochs >= 1 and --workers >= 1, got {seeds}, "
                         f"{first_seed}, {epochs}, {workers}")
    chosen_on = set(range(first_seed, first_seed + seeds)) & set(DEVELOPMENT_SEEDS)
    if chosen_on:
        raise ValueError(f"seed {min(chosen_on)} is a development seed (tables-dev uses {DEVELOPMENT_SEEDS.start}-"
                         f"{DEVELOPMENT_SEEDS.stop - 1}): test on seeds outside them, e.g. --first-seed "
                         f"{DEVELOPMENT_SEEDS.stop}")
    recipes = {part: recipe if epochs is None else replace(recipe, epochs=epochs)
               for part, recipe in {**RECIPES, **(recipes or {})}.items()}
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    threads = torch.get_num_threads() if workers == 1 else 1  # side by side: one core each
    calls = [functools.partial(run_table, seed, part, arm, recipe=recipes[part], threads=threads)
             for part in ARMS for seed in range(first_seed, first_seed + seeds) for arm in ARMS[part]]
    header = {"recipes": {part: asdict(recipe) for part, recipe in recipes.items()}, "arms": ARMS}
    runs = run_all(calls, workers=workers, results=out / "results.json", header=header, progress=progress,
                   resume=resume)
    wall = time.perf_counter() - started
    met, sentences = verdicts(runs)
    write_json(out / "results.json", {**header, "goal_met": met, "verdicts": sentences, "wall_seconds": wall,
                                      "finished": len(runs), "of": len(runs),
                                      "runs": [without_history(r) for r in runs]})
    for part in ARMS:
        plot_table_curves(runs, part, out / f"{part}_curves.png",
                          f"{part}, seed {first_seed}: plain vs " + ", ".join(list(ARMS[part])[1:]))
    first = {part: next(r for r in runs if r["part"] == part) for part in ARMS}
    imbalanced, small = first[IMBALANCED], first[SMALL]
    recipe = recipes[IMBALANCED]
    noise = json.dumps(arm_steps(ARMS[IMBALANCED]["feature_noise"], "<the training table>")[0])
    budget = ("" if first_seed == 0 else f" --first-seed {first_seed}") + (
        "" if epochs is None else f" --epochs {epochs}")
    lines = [f"# augserve train: tables (breast-cancer 1:{recipe.imbalance}, digits 200 rows), "
             f"{seeds_text(seeds)}", "",
             f"`augserve train --dataset tables --seeds {seeds}{budget}` ({wall / 60:.1f} minutes, "
             f"{workers} runs at a time, one thread each)", "",
             f"Seeds {first_seed}-{first_seed + seeds - 1}. Fixed in `augserve/experiments/tables.py`: breast-cancer "
             f"trains {mlp_text(recipe)} (the model and budget chosen on development seeds: `augserve train "
             f"--dataset tables-dev`, bench/train/tables-dev/); digits trains {mlp_text(recipes[SMALL])}. "
             "The last epoch's weights are kept; "
             "features standardized on each seed's training rows; no validation split, nothing chosen on the test "
             "split (scored after every epoch for the curves only). Pipelines run in process on every training "
             "batch, keys `sample_keys(index, epoch)`.", "",
             f"## breast-cancer, minority subsampled to 1:{recipe.imbalance} (balanced accuracy)", "",
             f"Per seed: scikit-learn's breast-cancer (569 rows, 30 features) split {1 - recipe.test_fraction:.0%}/"
             f"{recipe.test_fraction:.0%}, stratified, by the seed; the training split's malignant rows subsampled "
             f"(by the seed) to 1 per {recipe.imbalance} benign: {_counts(imbalanced['train_counts'])} "
             f"(class 0 malignant, 1 benign), {imbalanced['train_rows']} rows; the test split untouched: "
             f"{_counts(imbalanced['test_counts'])}. plain: the imbalanced rows. smote: `Smote(x, y, k_neighbors="
             f"{recipe.k_neighbors}, seed=seed).epoch(e)` (the minority raised to the majority's count, fresh "
             f"synthetic rows every epoch). feature_noise: the imbalanced rows through `[{noise}]` (sigma 0.1 of each "
             "column's std, p 0.5: the step's defaults). imblearn SMOTE (one copy): imbalanced-learn's "
             f"`SMOTE(k_neighbors={recipe.k_neighbors}, random_state=seed).fit_resample` once per seed, the same copy "
             "every epoch (reference). An epoch is every row of the arm once, so the resampled arms take more "
             "optimizer steps.", "", *summary_tables(runs, IMBALANCED), "",
             f"## digits, {recipes[SMALL].small_rows} training rows (accuracy)", "",
             f"Per seed: {small['train_rows']} rows of scikit-learn's digits (64 pixel features, 10 classes) drawn "
             f"stratified by the seed, the other {small['test_rows']} the test. Arms at the steps' defaults: "
             "feature_noise (sigma 0.1, p 0.5, std from the training table), feature_mask (p 0.3, fill marginal: "
             "the same column of another row of the batch), swap_noise (p 0.15).", "",
             *summary_tables(runs, SMALL), "", "## Verdicts", "", *[f"- {s}" for s in sentences], "",
             f"Learning curves (seed {first_seed}): `breast-cancer_curves.png`, `digits-200_curves.png` "
             "(their data: the .json "
             "beside each): accuracy on the training batches as trained on (dotted), the clean training rows "
             "(solid) and the test metric (dash-dotted; for the picture only).", ""]
    summary = "\n".join(lines)
    (out / "summary.md").write_text(summary)
    return summary
