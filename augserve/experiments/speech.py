"""``augserve train --dataset spoken-digits``: does the speech preset make a keyword model hold up on voices
and rooms it never heard?

Spoken digits synthesized with espeak-ng (``spoken_digits``): train on the training voices (a seed-drawn
validation split carved out of them), test on the held-out voices under fixed noise and reverb
(``TestConditions``, made with numpy/scipy, not with augserve). Two arms, the same in everything but the
pipeline the training batches go through: plain (``log_mel`` only) and augmented (``AUGMENTED``). The
pipeline runs in process on every training batch with the keys ``sample_keys(index, epoch)``, as a server
would run it. Validation and test are scored on the plain features. Goal: augmented better in every seed,
and by at least ``GOAL_POINTS`` on average.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from augserve.experiments.runs import run_all, without_history, write_json
from augserve.experiments.spoken_digits import (TEST_CONDITIONS, Clips, Corpus, TestConditions, corpus_record, corrupt,
                                                load_spoken_digits)
from augserve.pipeline import Pipeline
from augserve.random import sample_keys
from augserve.trainer.losses import SoftTargetCrossEntropy
from augserve.trainer.monitor import (History, kept_epoch_table, mean_sd_header, percent_mean_sd, plot_learning_curves,
                                      seeds_text)
from augserve.trainer.schedule import warmup_cosine_scheduler
from augserve.trainer.trainer import Trainer

# The augmented arm's pipeline: speed perturbation, noise, reverb, log_mel, SpecAugment masks
AUGMENTED = "speech-perturb"
ARMS = ("plain", "augmented")
GOAL_POINTS = 5.0  # the augmented arm's lead in test accuracy, on average over seeds, in points


@dataclass(frozen=True)
class SpeechRecipe:
    epochs: int = 8  # 5 seeds x 2 arms in about 5 minutes on 2 cores
    batch_size: int = 32
    learning_rate: float = 3e-3  # AdamW, warmup then cosine decay to 0
    warmup_epochs: int = 2
    width: int = 16  # CNN channels: width, 2 * width, 4 * width
    grid: int = 4  # the last feature map pooled to grid x grid cells
    validation_fraction: float = 0.2  # of the training voices' clips per word, drawn by the seed


RECIPE = SpeechRecipe()


def pipeline_steps(spec) -> list[dict]:
    """A pipeline as its steps (a preset name as the preset's steps), for summaries."""
    from augserve.presets import PRESETS

    return list(PRESETS[spec][1]) if isinstance(spec, str) and spec in PRESETS else list(spec)


def pipeline_name(spec) -> str:
    return f"`{spec}`" if isinstance(spec, str) else f"`{json.dumps(spec)}`"


def features_of(spec) -> dict:
    """The ``log_mel`` step a pipeline computes its features with: the plain arm's whole pipeline, and what
    validation and test clips are scored on, so both arms see the same features."""
    steps = [step for step in Pipeline.from_spec(spec).steps if step.op == "log_mel"]
    if len(steps) != 1:
        raise ValueError(f"the augmented pipeline {pipeline_name(spec)} must compute log-mel features with one "
                         f"log_mel step, found {len(steps)}")
    return {"op": "log_mel", **steps[0].args}


def speech_cnn(n_mels: int, num_classes: int, width: int = 16, grid: int = 4) -> nn.Module:
    """(B, n_mels, frames) dB -> logits: each clip standardized, three conv-BN-ReLU-maxpool blocks, average
    pooling to a ``grid`` x ``grid`` map of (frequency, time) cells (where in the word a feature is matters)
    and a linear classifier."""
    layers: list[nn.Module] = [nn.Unflatten(1, (1, n_mels)), nn.InstanceNorm2d(1)]
    for c_in, c_out in ((1, width), (width, 2 * width), (2 * width, 4 * width)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(grid), nn.Flatten(),
                         nn.Linear(4 * width * grid * grid, num_classes))


class AugmentedBatches:
    """Training batches, one epoch per pass: the clips shuffled by (seed, epoch), each batch of waveforms run
    through ``pipeline`` with the keys ``sample_keys(index, epoch)`` and the clips' valid lengths; yields
    (features, soft labels)."""

    def __init__(self, clips: Clips, pipeline: Pipeline, *, seed: int, batch_size: int, num_classes: int):
        self.waveforms, self.lengths = torch.from_numpy(clips.waveforms), torch.from_numpy(clips.lengths)
        self.labels = torch.from_numpy(clips.labels)
        self.pipeline, self.seed, self.batch_size, self.num_classes = pipeline, seed, batch_size, num_classes
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            out = self.pipeline(self.waveforms[index], self.labels[index], seed=self.seed,
                                keys=sample_keys(index, epoch), num_classes=self.num_classes,
                                lengths=self.lengths[index])
            yield out.x, out.labels


def validation_split(clips: Clips, fraction: float, seed: int) -> tuple[Clips, Clips]:
    """(fit, validation): ``fraction`` of each word's clips, drawn by ``seed``, held out."""
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for label in np.unique(clips.labels):
        members = rng.permutation(np.flatnonzero(clips.labels == label))
        held = round(fraction * len(members))
        val.append(members[:held])
        fit.append(members[held:])
    return clips.subset(np.sort(np.concatenate(fit))), clips.subset(np.sort(np.concatenate(val)))


@functools.lru_cache(maxsize=2)
def _data(corpus: Corpus, folder: str | None, conditions: TestConditions):
    data = load_spoken_digits(corpus, folder, progress=False)
    return data, corrupt(data.held_out, conditions)


class _ScoreEachEpoch:
    """Callback: the test set scored after every epoch (for the curves only; nothing is chosen by it)."""

    def __init__(self, loader):
        self.loader, self.accuracy = loader, []

    def __call__(self, trainer, record) -> None:
        self.accuracy.append(trainer.evaluate(self.loader)[1])


def run_speech(seed: int, arm: str, *, recipe: SpeechRecipe = RECIPE, augmented=None, corpus: Corpus = Corpus(),
               folder: str | None = None, conditions: TestConditions = TEST_CONDITIONS, curves: bool = False,
               threads: int = 1) -> dict:
    """One run: ``arm`` is 'plain' or 'augmented' (``augmented``: its pipeline, default ``AUGMENTED``);
    ``curves`` also scores the clean fit clips and the test set after every epoch."""
    torch.set_num_threads(threads)
    augmented = AUGMENTED if augmented is None else augmented
    data, test = _data(corpus, folder, conditions)
    features = Pipeline.from_spec([features_of(augmented)])
    fit, val = validation_split(data.train, recipe.validation_fraction, seed)

    def loader(clips: Clips) -> DataLoader:
        x = torch.cat([features(torch.from_numpy(clips.waveforms[i:i + 256])).x for i in range(0, len(clips), 256)])
        return DataLoader(TensorDataset(x, torch.from_numpy(clips.labels)), batch_size=256)

    pipeline = features if arm == "plain" else Pipeline.from_spec(augmented)
    train = AugmentedBatches(fit, pipeline, seed=seed, batch_size=recipe.batch_size, num_classes=data.num_classes)
    torch.manual_seed(seed)
    model = speech_cnn(features.steps[0].args["n_mels"], data.num_classes, recipe.width, recipe.grid)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.0)
    scheduler = warmup_cosine_scheduler(optimizer, total_steps=recipe.epochs * len(train),
                                        warmup_steps=recipe.warmup_epochs * len(train))
    test_loader = loader(test)
    score = _ScoreEachEpoch(test_loader) if curves else None
    trainer = Trainer(model, optimizer, SoftTargetCrossEntropy(), device="cpu", scheduler=scheduler,
                      callbacks=[score] if score else [], progress=False)
    started = time.perf_counter()
    fit_loader = loader(fit)
    history = trainer.fit(train, loader(val), epochs=recipe.epochs, train_eval=fit_loader if curves else None)
    history.augmented = arm != "plain"
    _, train_accuracy = trainer.evaluate(fit_loader)
    _, clean_accuracy = trainer.evaluate(loader(data.held_out))
    _, test_accuracy = trainer.evaluate(test_loader)
    return {"seed": seed, "arm": arm, "pipeline": "[log_mel]" if arm == "plain" else augmented,
            "fit_clips": len(fit), "val_clips": len(val),
            "test_clips": len(test), "epochs": len(history.records), "train_accuracy": train_accuracy,
            "val_accuracy": history.records[-1].val_accuracy, "held_out_clean_accuracy": clean_accuracy,
            "test_accuracy": test_accuracy, "seconds": time.perf_counter() - started,
            "test_curve": score.accuracy if score else None, "history": history}


def verdict(runs: list[dict]) -> tuple[bool, str]:
    """(goal met, the sentence): augmented better than plain in every seed and by GOAL_POINTS on average."""
    by = {arm: [r["test_accuracy"] for r in sorted(runs, key=lambda r: r["seed"]) if r["arm"] == arm]
          for arm in ARMS}
    wins = sum(a > p for a, p in zip(by["augmented"], by["plain"]))
    lead = 100 * (statistics.mean(by["augmented"]) - statistics.mean(by["plain"]))
    met = wins == len(by["plain"]) and lead >= GOAL_POINTS
    return met, (f"Goal (augmented better in every seed, by at least {GOAL_POINTS:g} points on average): "
                 f"**{'met' if met else 'not met'}**: augmented better in {wins} of {seeds_text(len(by['plain']))}, "
                 f"by {lead:+.1f} points on average.")


def summary_tables(runs: list[dict]) -> list[str]:
    seeds = sorted({r["seed"] for r in runs})
    spread = mean_sd_header(len(seeds))
    lines = [f"| arm | test acc %{spread} | held-out voices clean %{spread} | val % (training voices){spread} "
             f"| train % (clean){spread} | minutes per run |", "|---|---:|---:|---:|---:|---:|"]
    for arm in ARMS:
        chosen = [r for r in runs if r["arm"] == arm]
        lines.append(f"| {arm} | {percent_mean_sd([r['test_accuracy'] for r in chosen])} | "
                     f"{percent_mean_sd([r['held_out_clean_accuracy'] for r in chosen])} | "
                     f"{percent_mean_sd([r['val_accuracy'] for r in chosen])} | "
                     f"{percent_mean_sd([r['train_accuracy'] for r in chosen])} | "
                     f"{statistics.mean(r['seconds'] for r in chosen) / 60:.1f} |")
    lines += ["", "| seed | plain test % | augmented test % | difference (points) |", "|---:|---:|---:|---:|"]
    test = {(r["seed"], r["arm"]): 100 * r["test_accuracy"] for r in runs}
    for seed in seeds:
        lines.append(f"| {seed} | {test[seed, 'plain']:.1f} | {test[seed, 'augmented']:.1f} | "
                     f"{test[seed, 'augmented'] - test[seed, 'plain']:+.1f} |")
    differences = [test[s, "augmented"] - test[s, "plain"] for s in seeds]
    if len(seeds) > 1:
        lines.append(f"| mean ± sd | {statistics.mean(test[s, 'plain'] for s in seeds):.1f} | "
                     f"{statistics.mean(test[s, 'augmented'] for s in seeds):.1f} | "
                     f"{statistics.mean(differences):+.1f} ± {statistics.stdev(differences):.1f} |")
    return lines


TEST_SERIES = "test (held-out voices, noise + reverb)"


def plot_speech_curves(runs: list[dict], path: pathlib.Path, title: str) -> dict[str, History]:
    """The seed-0 runs as learning curves, with the test accuracy per epoch; their histories."""
    chosen = {r["arm"]: r for r in runs if r["seed"] == min(r["seed"] for r in runs)}
    histories = {arm: chosen[arm]["history"] for arm in ARMS if arm in chosen}
    plot_learning_curves(histories, path, title, {arm: chosen[arm]["test_curve"] for arm in histories}, TEST_SERIES)
    return histories


def run_speech_experiments(*, out: str | pathlib.Path, seeds: int = 5, epochs: int | None = None,
                           workers: int = 2, recipe: SpeechRecipe = RECIPE, augmented=None,
                           corpus: Corpus = Corpus(), folder: str | None = None,
                           conditions: TestConditions = TEST_CONDITIONS, progress: bool = True,
                           resume: bool = False) -> str:
    """Every seed x arm, ``workers`` runs at a time (one thread each); writes summary.md, results.json and
    learning_curves.png (+ .json) under ``out``; returns the summary."""
    if seeds < 1 or (epochs is not None and epochs < 1) or workers < 1:
        raise ValueError(f"expected --seeds >= 1, --epochs >= 1 and --workers >= 1, got {seeds}, {epochs}, {workers}")
    augmented = AUGMENTED if augmented is None else augmented
    recipe = recipe if epochs is None else SpeechRecipe(**{**asdict(recipe), "epochs": epochs})
    features = features_of(augmented)  # refuses a pipeline without one log_mel before any work
    load_spoken_digits(corpus, folder, progress=progress)  # synthesized once, here, not by the workers
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    calls = [functools.partial(run_speech, seed, arm, recipe=recipe, augmented=augmented, corpus=corpus, folder=folder,
                               conditions=conditions, curves=seed == 0) for seed in range(seeds) for arm in ARMS]
    header = {**corpus_record(corpus, conditions), "recipe": asdict(recipe), "features": features,
              "augmented": augmented, "augmented_steps": pipeline_steps(augmented)}
    runs = run_all(calls, workers=workers, results=out / "results.json", header=header, progress=progress,
                   resume=resume)
    wall = time.perf_counter() - started
    met, sentence = verdict(runs)
    write_json(out / "results.json", {**header, "goal_met": met, "wall_seconds": wall, "finished": len(runs),
                                      "of": len(runs), "runs": [without_history(r) for r in runs]})
    histories = plot_speech_curves(runs, out / "learning_curves.png",
                                   f"spoken digits, seed 0: plain vs augmented ({augmented})"
                                   if isinstance(augmented, str) else "spoken digits, seed 0: plain vs augmented")
    first = runs[0]
    lines = [f"# augserve train: spoken digits (espeak-ng), plain vs augmented, {seeds_text(seeds)}", "",
             f"`augserve train --dataset spoken-digits --seeds {seeds} --epochs {recipe.epochs}` "
             f"({wall / 60:.1f} minutes, {workers} runs at a time, one thread each)", "",
             f"Data: {corpus.describe()}. Clips are 16 kHz, trimmed of silence, zero-padded to 1 s. Per seed "
             f"{recipe.validation_fraction:.0%} of each word's training-voice clips (drawn by the seed) are the "
             f"validation split: {first['fit_clips']} clips are fit on, {first['val_clips']} validate.", "",
             f"Test conditions (fixed before any run): the held-out voices' {first['test_clips']} clips, "
             f"{conditions.describe()}", "",
             f"Every run: a 3-block CNN (width {recipe.width}, pooled to {recipe.grid} x {recipe.grid}) over log-mel "
             f"features `{json.dumps(features)}` (each clip standardized), "
             f"AdamW lr {recipe.learning_rate:g} (no decay), batch {recipe.batch_size}, {recipe.epochs} epochs "
             f"({recipe.warmup_epochs} of warmup, then cosine decay to 0), the last epoch's weights kept; nothing "
             "else differs between the arms. plain: the training batches through `[log_mel]` only. augmented: "
             f"through {pipeline_name(augmented)}"
             + (f" (`{json.dumps(pipeline_steps(augmented))}`)" if isinstance(augmented, str) else "")
             + ", in process, keys `sample_keys(index, epoch)`, with the clips' valid lengths. Validation, "
             "held-out clean and test clips are scored on the log-mel features alone. Accuracies in %.", "",
             *summary_tables(runs), "", sentence, "",
             "Learning curves (seed 0): `learning_curves.png` (its data: `learning_curves.json`): accuracy on the "
             "training batches as trained on (dotted), the clean fit clips (solid), validation (dashed) and the "
             "test set (dash-dotted; scored after every epoch for the picture only, nothing is chosen by it). "
             "The dots mark the last epoch, whose weights each run kept:", "", *kept_epoch_table(histories), ""]
    summary = "\n".join(lines)
    (out / "summary.md").write_text(summary)
    return summary
