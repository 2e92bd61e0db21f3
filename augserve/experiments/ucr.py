"""UCR time-series classification sets that ship inside sktime: their own train/test split, as tensors.

Each set comes as float32 (N, C, T) series (already z-normalized per series by the archive) and
class indices in a fixed order (the sorted label strings), plus the published test accuracy of
the FCN of Wang et al. (2017) on the same split, to read our numbers against.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import TensorDataset

from augserve.experiments.archives import SeriesSplit, load_ucr_archive, ucr_archive_names, ucr_roots
from augserve.experiments.published import FCN_ACCURACY
from augserve.extras import require

# name -> (sktime loader, FCN test accuracy on the archive's split: mean of 5 runs in Ismail Fawaz et al.
# 2019, "Deep learning for time series classification: a review", results/results-ucr-128.csv of
# github.com/hfawaz/dl-4-tsc, UCR archive 2018, FCN 128-256-128 filters, 2000 epochs)
UCR_SETS: dict[str, tuple[str, float]] = {
    "arrowhead": ("load_arrow_head", 0.843),
    "osuleaf": ("load_osuleaf", 0.979),
    "gunpoint": ("load_gunpoint", 1.000),
    "italypowerdemand": ("load_italy_power_demand", 0.963),
    "acsf1": ("load_acsf1", 0.898),
}
PUBLISHED_SOURCE = ("FCN, mean of 5 runs, Ismail Fawaz et al. 2019 (Data Min. Knowl. Disc. 33:917-963), "
                    "github.com/hfawaz/dl-4-tsc results/results-ucr-128.csv")


# The sets of the archive-scale experiment, fixed before any run: every set in the offline archive folders with
# at most RULE_MAX_TRAIN training series, series no longer than RULE_MAX_LENGTH (the cap that fits 5 seeds x 4
# configurations in about 45 minutes on 2 cores), no missing values, and a published FCN accuracy below
# RULE_BELOW (where a small network trained on little data leaves room to generalize better). Added after the
# first run (bench/train/ucr-rule): more training series than classes, so a validation split can be held at all
# (Fungi, one series per class, left early stopping and the adaptive strength nothing to read).
RULE = "ucr-rule"
RULE_MAX_TRAIN, RULE_MAX_LENGTH, RULE_BELOW = 300, 350, 0.90


def rule_sets(root=None) -> list[str]:
    """``ucr:<Name>`` for every set the rule picks, in the archive's order."""
    chosen = []
    for name in ucr_archive_names(root):
        if FCN_ACCURACY.get(name, 1.0) >= RULE_BELOW:
            continue
        folder = next(base / name for base in ucr_roots(root) if (base / name).is_dir())
        with open(folder / f"{name}_TRAIN.tsv") as train:
            rows = [line.split("\t") for line in train if line.strip()]
        length = len(rows[0]) - 1
        complete = all(len(row) == length + 1 and "NaN" not in row and "" not in row for row in rows)
        classes = len({row[0] for row in rows})
        if len(rows) <= RULE_MAX_TRAIN and length <= RULE_MAX_LENGTH and complete and len(rows) > classes:
            chosen.append(f"ucr:{name}")
    return chosen


def load_ucr(name: str) -> SeriesSplit:
    """One of ``UCR_SETS`` from sktime's bundled copy (no download), or ``ucr:<Name>`` from the UCR 2018 archive
    folder (``archives.py``), with the FCN's published accuracy where there is one."""
    if name.startswith("ucr:"):
        split = load_ucr_archive(name.removeprefix("ucr:"))
        return dataclasses.replace(split, published_accuracy=FCN_ACCURACY.get(split.name.removeprefix("ucr:")))
    if name not in UCR_SETS:
        raise ValueError(f"dataset: expected one of {', '.join(UCR_SETS)}, ucr:<Name> or digits, got {name!r}")
    require("sktime", "the UCR experiments")
    from sktime import datasets

    loader, published = UCR_SETS[name]
    parts = [getattr(datasets, loader)(split=split, return_type="numpy3D") for split in ("train", "test")]
    classes = sorted(set(parts[0][1]) | set(parts[1][1]))

    def tensors(series: np.ndarray, labels: np.ndarray) -> TensorDataset:
        target = torch.tensor([classes.index(label) for label in labels], dtype=torch.int64)
        return TensorDataset(torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32)), target)

    return SeriesSplit(name, tensors(*parts[0]), tensors(*parts[1]), len(classes), published)


def validation_split(train: TensorDataset, fraction: float, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """(fit, validation) carved from the training set alone, stratified by class, by ``seed``.

    A class with one series keeps it for fitting; a set where every class has one is refused, since
    the validation split would be empty.
    """
    x, y = train.tensors
    generator = torch.Generator().manual_seed(seed)
    held = []
    for label in torch.unique(y):
        members = torch.nonzero(y == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        held.append(members[:max(1, round(fraction * len(members)))] if len(members) > 1 else members[:0])
    validation = torch.cat(held).sort().values
    if not len(validation):
        raise ValueError(f"validation_split: every class has a single training series ({len(y)} series, "
                         f"{len(held)} classes); no validation split can be held out")
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[validation] = False
    return TensorDataset(x[keep], y[keep]), TensorDataset(x[validation], y[validation])
