"""``augserve train``: does regularization generalize on digits, and does IMP keep accuracy at 80% sparsity?

Regularization: a small CNN trained on a small split of scikit-learn's digits, once plainly and
once with augmentation (affine + mixup/cutmix, in process or from a server), decoupled weight
decay, dropout, label smoothing and early stopping, over several seeds. Pruning: a small MLP
trained dense, then by iterative magnitude pruning with late rewinding to 80% sparsity.
"""

from __future__ import annotations

import copy
import pathlib
import statistics
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from augserve.client.loader import IndexedDataset, RemoteAugment
from augserve.experiments.models import small_cnn, small_mlp
from augserve.in_process import InProcessAugmenter
from augserve.trainer.decay import param_groups
from augserve.trainer.early_stopping import EarlyStopping
from augserve.trainer.losses import SoftTargetCrossEntropy
from augserve.trainer.monitor import History, kept_epoch_table, plot_learning_curves, seeds_text
from augserve.trainer.pruning import iterative_magnitude_pruning, make_permanent, sparsity_report
from augserve.trainer.trainer import Trainer

DIGITS_PIPELINE = [
    {"op": "random_affine", "degrees": 12, "translate": [0.125, 0.125], "scale": [0.9, 1.1]},
    {"op": "mix", "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "prob": 0.5},
]


@dataclass
class Split:
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset


def digits_split(train_fraction: float, seed: int, val_fraction: float = 0.1) -> Split:
    """uint8 (N, 1, 8, 8) digits split at random by ``seed``: train / validation / test (the rest)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.from_numpy(np.round(data.images * (255.0 / 16.0)).astype(np.uint8)[:, None])
    labels = torch.from_numpy(data.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(train_fraction * len(order)), int(val_fraction * len(order))
    parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    return Split(*(TensorDataset(images[p], labels[p]) for p in parts))


def _loader(dataset, shuffle: bool, seed: int, batch_size: int = 32) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))


def run_regularization(seed: int, *, regularized: bool, epochs: int, train_fraction: float, augmenter=None,
                       progress: bool = False) -> dict:
    """One training run; returns its accuracies, gap and history."""
    split = digits_split(train_fraction, seed)
    torch.manual_seed(seed)
    model = small_cnn(dropout=0.25 if regularized else 0.0)
    optimizer = torch.optim.AdamW(param_groups(model, 0.05 if regularized else 0.0), lr=2e-3)
    if regularized:
        train = RemoteAugment(_loader(IndexedDataset(split.train), True, seed), augmenter or InProcessAugmenter(),
                              DIGITS_PIPELINE, seed=seed, num_classes=10)
        trainer = Trainer(model, optimizer, SoftTargetCrossEntropy(label_smoothing=0.1), device="cpu",
                          early_stopping=EarlyStopping(patience=20), progress=progress)
    else:
        train = _loader(split.train, True, seed)
        trainer = Trainer(model, optimizer, SoftTargetCrossEntropy(), device="cpu", progress=progress)
    history = trainer.fit(train, _loader(split.val, False, seed), epochs=epochs,
                          train_eval=_loader(split.train, False, seed))
    history.augmented = regularized
    train_loss, train_accuracy = trainer.evaluate(_loader(split.train, False, seed))  # the kept epoch's clean score
    test_loss, test_accuracy = trainer.evaluate(_loader(split.test, False, seed))
    return {"seed": seed, "regularized": regularized, "epochs": len(history.records),
            "train_accuracy": train_accuracy, "test_accuracy": test_accuracy,
            "gap": train_accuracy - test_accuracy, "train_loss": train_loss, "test_loss": test_loss,
            "diagnosis": history.diagnosis(), "history": history}


def run_pruning(seed: int, *, epochs: int, target_sparsity: float = 0.8, rounds: int = 4) -> dict:
    """Dense MLP vs its IMP ticket (late rewinding to the weights after one epoch), same split and seed."""
    split = digits_split(0.6, seed, val_fraction=0.0)
    train, test = _loader(split.train, True, seed), _loader(split.test, False, seed)

    def fit(model: torch.nn.Module, n: int) -> Trainer:
        trainer = Trainer(model, torch.optim.AdamW(param_groups(model, 0.0), lr=2e-3), device="cpu", progress=False)
        trainer.fit(train, epochs=n)
        return trainer

    torch.manual_seed(seed)
    dense = small_mlp()
    fit(dense, 1)
    rewind_state = copy.deepcopy(dense.state_dict())
    ticket = copy.deepcopy(dense)
    dense_accuracy = fit(dense, epochs - 1).evaluate(test)[1]
    sparsities = iterative_magnitude_pruning(ticket, lambda m: fit(m, epochs), target_sparsity=target_sparsity,
                                             rounds=rounds, rewind_state=rewind_state)
    ticket_accuracy = Trainer(make_permanent(ticket), torch.optim.SGD(ticket.parameters(), lr=0.0), device="cpu",
                              progress=False).evaluate(test)[1]
    return {"seed": seed, "dense_accuracy": dense_accuracy, "ticket_accuracy": ticket_accuracy,
            "sparsity": sparsity_report(ticket)["total"]["sparsity"], "round_sparsities": sparsities}


def _mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2%} ± {statistics.stdev(values):.2%}"


def regularization_table(runs: list[dict]) -> list[str]:
    """One row per run, then mean ± sd rows when there are several seeds (one seed has no spread)."""
    lines = ["| run | seed | epochs | train acc (clean) | test acc | gap (train - test) | diagnosis |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for run in runs:
        name = "regularized" if run["regularized"] else "plain"
        lines.append(f"| {name} | {run['seed']} | {run['epochs']} | {run['train_accuracy']:.2%} | "
                     f"{run['test_accuracy']:.2%} | {run['gap']:.2%} | {run['diagnosis'].split(':')[0]} |")
    for regularized in (False, True):
        chosen = [r for r in runs if r["regularized"] == regularized]
        if len(chosen) < 2:
            continue
        lines.append(f"| **{'regularized' if regularized else 'plain'}, mean ± sd** | | | "
                     f"{_mean_std([r['train_accuracy'] for r in chosen])} | {_mean_std([r['test_accuracy'] for r in chosen])} | "
                     f"{_mean_std([r['gap'] for r in chosen])} | |")
    return lines


def pruning_table(runs: list[dict]) -> list[str]:
    lines = ["| seed | dense test acc | IMP ticket test acc | sparsity | difference |", "|---:|---:|---:|---:|---:|"]
    for run in runs:
        lines.append(f"| {run['seed']} | {run['dense_accuracy']:.2%} | {run['ticket_accuracy']:.2%} | "
                     f"{run['sparsity']:.1%} | {run['ticket_accuracy'] - run['dense_accuracy']:+.2%} |")
    return lines


def run_experiments(*, out: str | pathlib.Path, seeds: int = 3, epochs: int = 100, train_fraction: float = 0.2,
                    experiment: str = "all", augmenter=None, progress: bool = True) -> str:
    """Run the experiments, write ``summary.md`` and ``learning_curves.png`` under ``out``; the summary."""
    from tqdm import tqdm

    if seeds < 1 or epochs < 1 or not 0.05 <= train_fraction <= 0.85:
        raise ValueError(f"expected --seeds >= 1, --epochs >= 1 and --train-fraction in [0.05, 0.85], "
                         f"got {seeds}, {epochs}, {train_fraction}")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = "from the server" if augmenter is not None else "in process"
    lines = [f"# augserve train: digits, {seeds_text(seeds)}", ""]
    if experiment in ("all", "regularization"):
        runs = []
        jobs = [(seed, regularized) for seed in range(seeds) for regularized in (False, True)]
        for seed, regularized in tqdm(jobs, desc="regularization runs", disable=not progress):
            runs.append(run_regularization(seed, regularized=regularized, epochs=epochs,
                                           train_fraction=train_fraction, augmenter=augmenter))
        curves: dict[str, History] = {("regularized" if r["regularized"] else "plain"): r["history"]
                                      for r in runs if r["seed"] == 0}
        plot_learning_curves(curves, out / "learning_curves.png",
                             f"digits, {train_fraction:.0%} train split, seed 0")
        lines += [f"## Regularization ({train_fraction:.0%} of digits for training, up to {epochs} epochs, "
                  f"augmentation {source})", "",
                  "plain: AdamW without decay, nothing else. regularized: affine augmentation + mixup/cutmix "
                  "(p=0.5), AdamW decay 0.05 on conv/linear weights, dropout 0.25, label smoothing 0.1, "
                  "early stopping (patience 20, best weights restored). Accuracies on the clean train split "
                  "(unaugmented) and the held-out test split (70% of digits), with the weights each run kept.", "",
                  *regularization_table(runs), "",
                  "Learning curves (seed 0): `learning_curves.png` (its data: `learning_curves.json`). Accuracy "
                  "on the training batches (augmented for regularized: affine, mixup/cutmix) is drawn dotted "
                  "beside the clean train split (solid) and validation (dashed); the dots mark the epoch whose "
                  "weights each run kept, and are these numbers (seed 0's train acc above is the clean one):", "",
                  *kept_epoch_table(curves), ""]
    if experiment in ("all", "pruning"):
        runs = [run_pruning(seed, epochs=max(epochs // 4, 10)) for seed in
                tqdm(range(seeds), desc="pruning runs", disable=not progress)]
        lines += ["## Iterative magnitude pruning (MLP 64-256-128-10, 60% of digits for training)", "",
                  "4 rounds of global magnitude pruning (33% of the remaining weights each) to 80% sparsity, "
                  "rewinding survivors to the weights after epoch 1 (late resetting).", "",
                  *pruning_table(runs), ""]
    summary = "\n".join(lines)
    (out / "summary.md").write_text(summary)
    return summary
