"""``augserve train --dataset fortunes``: does EDA make a small word-level model better on 500 sentences?

Debian's fortune cookies in five categories (``fortunes``): per seed ``per_class`` training sentences per
category drawn from the training pool, scored on the fixed test fortunes. Arms, the same in everything but the
pipeline the training batches go through: plain (the sentences as they are), eda and back-translation. A
pipeline runs in process on every training batch with the keys ``sample_keys(index, epoch)``, so each pass over
the sentences brings fresh copies. Every run is Kim's (2014) CNN on word ids (the vocabulary: the seed's
training sentences), a fixed budget with cosine decay to 0, the last epoch's weights kept; no validation split,
nothing chosen on the test (scored after every epoch for the curves only). Goal: eda better than plain in every
seed, and by at least ``GOAL_POINTS`` on average.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from augserve.experiments.fortunes import Sentences, dataset_record, draw_training, load_fortunes
from augserve.experiments.runs import run_all, without_history, write_json
from augserve.pipeline import Pipeline
from augserve.random import sample_keys
from augserve.text import paraphrases
from augserve.text.tokens import eda_words
from augserve.trainer.losses import SoftTargetCrossEntropy
from augserve.trainer.monitor import mean_sd_header, percent_mean_sd, plot_learning_curves, seeds_text
from augserve.trainer.schedule import warmup_cosine_scheduler
from augserve.trainer.trainer import Trainer

# Wei & Zou's alpha for 500 training sentences. They train on 16 augmented copies beside each original; here
# every pass augments every sentence afresh (at alpha 0.05 replacement, insertion and swap change one word of a
# sentence of up to 39 words, so the original mostly survives).
EDA = [{"op": "eda", "alpha_sr": 0.05, "alpha_ri": 0.05, "alpha_rs": 0.05, "p_rd": 0.05}]
BACK_TRANSLATION = [{"op": "back_translation", "p": 0.5}]
ARMS: dict[str, list[dict] | None] = {"plain": None, "eda": EDA, "back-translation": BACK_TRANSLATION}
GOAL_POINTS = 2.0  # eda's lead in test accuracy, on average over seeds, in points


@dataclass(frozen=True)
class TextRecipe:
    per_class: int = 100  # training sentences per category and seed: 500 in all
    epochs: int = 40  # passes over the training sentences
    batch_size: int = 32
    learning_rate: float = 2e-3  # AdamW, warmup then cosine decay to 0
    weight_decay: float = 0.01
    warmup_epochs: int = 1
    embedding: int = 64
    filters: int = 64  # per filter width
    widths: tuple[int, ...] = (3, 4, 5)
    dropout: float = 0.5


RECIPE = TextRecipe()
PAD, UNKNOWN = 0, 1


class Vocabulary:
    """Word ids: 0 pads, 1 is any word the training sentences do not hold, then their words, sorted."""

    def __init__(self, sentences: list[str]):
        self.words = sorted({word for sentence in sentences for word in eda_words(sentence)})
        self.index = {word: i + 2 for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words) + 2

    def encode(self, sentences: list[str], least: int = 1) -> torch.Tensor:
        """(B, L) int64 ids of EDA's words, padded to the longest sentence (and at least ``least``)."""
        rows = [[self.index.get(word, UNKNOWN) for word in eda_words(sentence)] for sentence in sentences]
        ids = torch.full((len(rows), max(least, *map(len, rows))), PAD, dtype=torch.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.int64)
        return ids


class WordCNN(nn.Module):
    """(B, L) word ids -> logits, Kim (2014): embeddings, one convolution per width, each ReLU'd and max-pooled
    over the windows inside the sentence (so padding never counts), dropout and a linear classifier. Word vectors
    start uniform in [-0.25, 0.25], as Kim's do without pretrained ones (with torch's N(0, 1) plain reached about
    36% instead of 47% on sentences of the training pool held out from the draw)."""

    def __init__(self, vocabulary: int, num_classes: int, recipe: TextRecipe = RECIPE):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, recipe.embedding, padding_idx=PAD)
        with torch.no_grad():
            self.embed.weight[PAD + 1:].uniform_(-0.25, 0.25)
        self.convs = nn.ModuleList(nn.Conv1d(recipe.embedding, recipe.filters, width) for width in recipe.widths)
        self.dropout = nn.Dropout(recipe.dropout)
        self.out = nn.Linear(recipe.filters * len(recipe.widths), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != PAD).sum(1, keepdim=True)
        x = self.embed(ids).transpose(1, 2)
        pooled = []
        for conv in self.convs:
            y = torch.relu(conv(x))
            windows = (lengths - conv.kernel_size[0] + 1).clamp(min=1)  # a short sentence: its first window
            inside = torch.arange(y.shape[2], device=ids.device) < windows
            pooled.append(y.masked_fill(~inside[:, None, :], 0.0).amax(2))  # after ReLU every value is >= 0
        return self.out(self.dropout(torch.cat(pooled, 1)))


class SentenceBatches:
    """Training batches, one epoch per pass: the sentences shuffled by (seed, epoch), each batch run through
    ``pipeline`` (None: as they are) with the keys ``sample_keys(index, epoch)``, then encoded; yields
    (word ids, soft labels)."""

    def __init__(self, sentences: Sentences, vocabulary: Vocabulary, pipeline: Pipeline | None, *, seed: int,
                 batch_size: int, num_classes: int, least: int):
        self.sentences, self.vocabulary, self.pipeline = sentences, vocabulary, pipeline
        self.labels = torch.from_numpy(sentences.labels)
        self.seed, self.batch_size, self.num_classes, self.least = seed, batch_size, num_classes, least
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.sentences) / self.batch_size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            texts, labels = [self.sentences.texts[i] for i in index.tolist()], self.labels[index]
            if self.pipeline is None:
                soft = nn.functional.one_hot(labels, self.num_classes).float()
            else:
                out = self.pipeline(texts, labels, seed=self.seed, keys=sample_keys(index, epoch),
                                    num_classes=self.num_classes)
                texts, soft = out.x, out.labels
            yield self.vocabulary.encode(texts, self.least), soft


def encoded(sentences: Sentences, vocabulary: Vocabulary, least: int, batch_size: int = 256) -> list:
    """Scoring batches: (word ids, labels), encoded once."""
    labels = torch.from_numpy(sentences.labels)
    return [(vocabulary.encode(sentences.texts[i:i + batch_size], least), labels[i:i + batch_size])
            for i in range(0, len(sentences), batch_size)]


class _ScoreEachEpoch:
    """Callback: the test set scored after every epoch (for the curves only; nothing is chosen by it)."""

    def __init__(self, batches):
        self.batches, self.accuracy = batches, []

    def __call__(self, trainer, record) -> None:
        self.accuracy.append(trainer.evaluate(self.batches)[1])


def train_and_score(train: Sentences, test: Sentences, arm: str, seed: int, *, num_classes: int,
                    recipe: TextRecipe = RECIPE, curves: bool = False) -> dict:
    """One run of ``arm`` on ``train``, scored on ``test``; ``curves`` also scores the test after every epoch."""
    vocabulary, least = Vocabulary(train.texts), max(recipe.widths)
    pipeline = None if ARMS[arm] is None else Pipeline.from_spec(ARMS[arm])
    batches = SentenceBatches(train, vocabulary, pipeline, seed=seed, batch_size=recipe.batch_size,
                              num_classes=num_classes, least=least)
    torch.manual_seed(seed)
    model = WordCNN(len(vocabulary), num_classes, recipe)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    scheduler = warmup_cosine_scheduler(optimizer, total_steps=recipe.epochs * len(batches),
                                        warmup_steps=recipe.warmup_epochs * len(batches))
    clean, scored = encoded(train, vocabulary, least), encoded(test, vocabulary, least)
    score = _ScoreEachEpoch(scored) if curves else None
    trainer = Trainer(model, optimizer, SoftTargetCrossEntropy(), device="cpu", scheduler=scheduler,
                      callbacks=[score] if score else [], progress=False)
    started = time.perf_counter()
    history = trainer.fit(batches, None, epochs=recipe.epochs, train_eval=clean)
    history.augmented = pipeline is not None
    unknown = sum(int((ids == UNKNOWN).sum()) for ids, _ in scored) / sum(int((ids != PAD).sum()) for ids, _ in scored)
    return {"seed": seed, "arm": arm, "steps": ARMS[arm], "train_sentences": len(train),
            "test_sentences": len(test), "vocabulary": len(vocabulary.words), "test_unknown_words": unknown,
            "epochs": len(history.records), "optimizer_steps": recipe.epochs * len(batches),
            "train_accuracy": history.records[-1].train_clean_accuracy, "test_accuracy": trainer.evaluate(scored)[1],
            "seconds": time.perf_counter() - started, "test_curve": score.accuracy if score else None,
            "history": history}


def run_text(seed: int, arm: str, *, recipe: TextRecipe = RECIPE, folder: str | None = None, curves: bool = False,
             threads: int = 1) -> dict:
    """One run: ``arm`` (a key of ``ARMS``) for ``seed`` on that seed's training draw."""
    torch.set_num_threads(threads)
    data = load_fortunes(folder)
    if any(step["op"] == "back_translation" for step in ARMS[arm] or ()):
        # the whole pool's paraphrases made ahead, in pool order, as `augserve datasets translate` makes a served
        # set's: a sentence's round trip then depends on nothing a run does (apertium's tagger reads across
        # the sentences of a chunk)
        paraphrases.lookup(data.pool.texts, translate=True)
    train = draw_training(data.pool, recipe.per_class, seed)
    return train_and_score(train, data.test, arm, seed, num_classes=data.num_classes, recipe=recipe, curves=curves)


def _by_seed(runs: list[dict], arms) -> dict[str, list[float]]:
    chosen = sorted(runs, key=lambda r: r["seed"])
    return {arm: [r["test_accuracy"] for r in chosen if r["arm"] == arm] for arm in arms}


def verdicts(runs: list[dict], arms: tuple[str, ...]) -> tuple[bool, list[str]]:
    """(goal met, one sentence per arm against plain): eda better than plain in every seed and by GOAL_POINTS
    on average is the goal; back-translation is reported the same way, without one."""
    by, met, sentences = _by_seed(runs, arms), False, []
    for arm in arms[1:]:
        wins = sum(a > p for a, p in zip(by[arm], by["plain"]))
        lead = 100 * (statistics.mean(by[arm]) - statistics.mean(by["plain"]))
        text = f"{arm} better than plain in {wins} of {seeds_text(len(by['plain']))}, by {lead:+.1f} points on average"
        if arm == "eda":
            met = wins == len(by["plain"]) and lead >= GOAL_POINTS
            text = (f"Goal (eda better than plain in every seed, by at least {GOAL_POINTS:g} points on average): "
                    f"**{'met' if met else 'not met'}**: {text}")
        sentences.append(text + ".")
    return met, sentences


def summary_tables(runs: list[dict], arms: tuple[str, ...]) -> list[str]:
    seeds = sorted({r["seed"] for r in runs})
    spread = mean_sd_header(len(seeds))
    lines = [f"| arm | test acc %{spread} | train % (clean){spread} | seconds per run |", "|---|---:|---:|---:|"]
    for arm in arms:
        chosen = [r for r in runs if r["arm"] == arm]
        lines.append(f"| {arm} | {percent_mean_sd([r['test_accuracy'] for r in chosen])} | "
                     f"{percent_mean_sd([r['train_accuracy'] for r in chosen])} | "
                     f"{statistics.mean(r['seconds'] for r in chosen):.0f} |")
    test = {(r["seed"], r["arm"]): 100 * r["test_accuracy"] for r in runs}
    lines += ["", "| seed | " + " | ".join(f"{arm} test %" for arm in arms) + " | "
              + " | ".join(f"{arm} - plain" for arm in arms[1:]) + " |", "|---:|" + "---:|" * (2 * len(arms) - 1)]
    for seed in seeds:
        lines.append(f"| {seed} | " + " | ".join(f"{test[seed, arm]:.1f}" for arm in arms) + " | "
                     + " | ".join(f"{test[seed, arm] - test[seed, 'plain']:+.1f}" for arm in arms[1:]) + " |")
    if len(seeds) > 1:
        differences = {arm: [test[s, arm] - test[s, "plain"] for s in seeds] for arm in arms[1:]}
        lines.append("| mean ± sd | " + " | ".join(f"{statistics.mean(test[s, arm] for s in seeds):.1f}"
                                                   for arm in arms) + " | "
                     + " | ".join(f"{statistics.mean(d):+.1f} ± {statistics.stdev(d):.1f}"
                                  for d in differences.values()) + " |")
    return lines


def plot_text_curves(runs: list[dict], path: pathlib.Path, title: str) -> None:
    """The lowest seed's runs as learning curves, with the test accuracy per epoch."""
    seed = min(r["seed"] for r in runs)
    chosen = {r["arm"]: r for r in runs if r["seed"] == seed}
    histories = {arm: run["history"] for arm, run in chosen.items()}
    plot_learning_curves(histories, path, title, {arm: chosen[arm]["test_curve"] for arm in histories},
                         "test accuracy (fixed test fortunes)")


def _steps_text(arm: str) -> str:
    return "the sentences as they are" if ARMS[arm] is None else f"`{json.dumps(ARMS[arm])}`"


def run_text_experiments(*, out: str | pathlib.Path, seeds: int = 5, epochs: int | None = None, workers: int = 2,
                         recipe: TextRecipe = RECIPE, arms: tuple[str, ...] = tuple(ARMS), folder: str | None = None,
                         progress: bool = True, resume: bool = False) -> str:
    """Every seed x arm, ``workers`` runs at a time (one thread each; 1: in this process); writes summary.md,
    results.json and learning_curves.png (+ .json) under ``out``; returns the summary."""
    if seeds < 1 or (epochs is not None and epochs < 1) or workers < 1:
        raise ValueError(f"expected --seeds >= 1, --epochs >= 1 and --workers >= 1, got {seeds}, {epochs}, {workers}")
    if arms[0] != "plain" or not set(arms) <= set(ARMS):
        raise ValueError(f"arms: expected 'plain' first, then any of {list(ARMS)[1:]}, got {list(arms)}")
    recipe = recipe if epochs is None else TextRecipe(**{**asdict(recipe), "epochs": epochs})
    data = load_fortunes(folder)  # a missing package is said here, before any worker starts
    for arm in arms:
        if ARMS[arm] is not None:
            Pipeline.from_spec(ARMS[arm])  # and a pipeline this build cannot run
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    calls = [functools.partial(run_text, seed, arm, recipe=recipe, folder=folder, curves=seed == 0, threads=1)
             for seed in range(seeds) for arm in arms]
    header = {"dataset": dataset_record(data), "recipe": asdict(recipe), "arms": {arm: ARMS[arm] for arm in arms},
              "goal_points": GOAL_POINTS}
    runs = run_all(calls, workers=workers, results=out / "results.json", header=header, progress=progress,
                   resume=resume)
    wall = time.perf_counter() - started
    met, sentences, record = *verdicts(runs, arms), header["dataset"]
    write_json(out / "results.json", {**header, "goal_met": met, "verdicts": sentences, "wall_seconds": wall,
                                      "finished": len(runs), "of": len(runs), "runs": [without_history(r) for r in runs]})
    plot_text_curves(runs, out / "learning_curves.png",
                     f"fortunes, {runs[0]['train_sentences']} training sentences, seed 0: " + " vs ".join(arms))
    first = runs[0]
    counts = ", ".join(f"{name} {count}" for name, count in record["test_counts"].items())
    lines = [f"# augserve train: fortunes ({len(data.categories)} categories, {first['train_sentences']} training "
             f"sentences), {' vs '.join(arms)}, {seeds_text(seeds)}", "",
             f"`augserve train --dataset fortunes --seeds {seeds} --epochs {recipe.epochs}` ({wall / 60:.1f} "
             f"minutes, {workers} {'run' if workers == 1 else 'runs'} at a time, one thread each)", "",
             f"Data (fixed before any run, `augserve/experiments/fortunes.py`): {record['rule']} Training pool "
             f"{record['pool_sentences']:,} sentences, test {record['test_sentences']:,} ({counts}). Per seed "
             f"{recipe.per_class} sentences per category drawn from the pool by the seed.", "",
             f"Every run: Kim's CNN on word ids (embedding {recipe.embedding} starting uniform in [-0.25, 0.25], "
             f"{recipe.filters} filters of each "
             f"width {', '.join(map(str, recipe.widths))}, max-pooled over the sentence, dropout {recipe.dropout:g}), "
             "the vocabulary the seed's training sentences (EDA's tokenizer; any other word one shared id: on "
             f"the test {statistics.mean(r['test_unknown_words'] for r in runs):.0%} of the words), AdamW lr "
             f"{recipe.learning_rate:g} (weight decay {recipe.weight_decay:g}), batch {recipe.batch_size}, "
             f"{recipe.epochs} passes over the training sentences ({recipe.warmup_epochs} of warmup, then cosine "
             "decay to 0), the last epoch's weights kept; no validation split, nothing chosen on the test (scored "
             "after every epoch for the curves only); nothing else differs between the arms. Pipelines run in "
             "process on every training batch, keys `sample_keys(index, epoch)`. "
             + " ".join(f"{arm}: {_steps_text(arm)}." for arm in arms)
             + (" The pool's paraphrases are made once, in pool order, before training." if "back-translation" in arms
                else "") + " Accuracies in %.", "",
             *summary_tables(runs, arms), "", *[f"- {sentence}" for sentence in sentences], "",
             "Learning curves (seed 0): `learning_curves.png` (its data: `learning_curves.json`): accuracy on the "
             "training batches as trained on (dotted), the clean training sentences (solid) and the test "
             "(dash-dotted; its last point is the run's test accuracy above).", ""]
    summary = "\n".join(lines)
    (out / "summary.md").write_text(summary)
    return summary
