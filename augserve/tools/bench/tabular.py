"""Table rows of ``augserve bench``: SMOTE epochs on 100k x 30 against imbalanced-learn, and the per-batch tabular
steps on 4096 x 30 against plain numpy.

SMOTE: imbalanced-learn's ``SMOTE().fit_resample`` finds the neighbours and makes the rows on every call, so a
fresh resampled epoch costs it a whole call (the anchor; also with its neighbour search on 2 jobs, as torch uses
the cores). augserve's ``Smote`` finds the neighbours once, at construction (timed apart), and ``epoch(e)`` then
makes a fresh epoch's rows with a gather and a lerp. Rows per second count every row of an epoch (the originals
and the synthetic ones) on both sides.

Steps: the anchor is a plain numpy implementation of the same operation on the whole batch (numpy's default
generator, one draw per sample or entry; no per-sample replayable keys), against ``Pipeline`` with a key per
sample.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from augserve.pipeline import Pipeline
from augserve.tools.bench.harness import Engine, Wanted

SMOTE_ROWS, SMOTE_FEATURES, MINORITY = 100_000, 30, 0.1
BATCH, FEATURES = 4096, 30


def _smote_case() -> str:
    return f"tabular SMOTE epoch, {SMOTE_ROWS // 1000}k x {SMOTE_FEATURES}, {MINORITY:.0%} minority"


def _step_case(op: str) -> str:
    return f"tabular {op}, {BATCH} x {FEATURES}"


STEPS = {"feature_noise": {"op": "feature_noise", "std": [1.0] * FEATURES, "sigma": 0.1, "p": 0.5},
         "feature_mask marginal": {"op": "feature_mask", "fill": "marginal", "p": 0.3},
         "swap_noise": {"op": "swap_noise", "p": 0.15}}


def tabular_cases(device: torch.device, wanted: Wanted) -> dict[str, list[Engine]]:
    """The tabular cases ``wanted`` accepts, built only then."""
    cases: dict[str, list[Engine]] = {}
    if wanted(_smote_case()):
        cases[_smote_case()] = _smote_engines(device)
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(BATCH, FEATURES, generator=generator)
    for op, step in STEPS.items():
        if wanted(_step_case(op)):
            cases[_step_case(op)] = _step_engines(op, step, x, device)
    return cases


def blobs(rows: int = SMOTE_ROWS, features: int = SMOTE_FEATURES, minority: float = MINORITY, seed: int = 0):
    """Two Gaussian classes, ``minority`` of the rows in class 1: (x float32 (rows, features), y int64)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(rows) < round(minority * rows)).astype(np.int64)
    x = rng.standard_normal((rows, features), dtype=np.float32) + y[:, None].astype(np.float32)
    return x, y


def _smote_engines(device: torch.device) -> list[Engine]:
    from imblearn.over_sampling import SMOTE
    from sklearn.neighbors import NearestNeighbors

    from augserve.smote import Smote

    x, y = blobs()
    smote = Smote(x, y, device=device)
    rows = len(smote)  # an epoch: the originals and the synthetic rows, on both sides
    epochs = itertools.count()
    jobs = NearestNeighbors(n_neighbors=6, n_jobs=2)
    return [
        Engine("imbalanced-learn SMOTE.fit_resample", lambda: SMOTE(random_state=0).fit_resample(x, y),
               "neighbour search + rows every call: what a fresh epoch costs it", rows),
        Engine("imbalanced-learn SMOTE.fit_resample",
               lambda: SMOTE(k_neighbors=jobs, random_state=0).fit_resample(x, y),
               "the same, NearestNeighbors(n_jobs=2)", rows),
        Engine("augserve Smote.epoch(e)", lambda: smote.epoch(next(epochs)),
               "a fresh epoch from neighbours found once: gather + lerp", rows),
        Engine("augserve Smote(...) construction", lambda: Smote(x, y, device=device),
               "the one-time neighbour search (rows/s: an epoch's rows over its time)", rows),
    ]


def _step_engines(op: str, step: dict, x: torch.Tensor, device: torch.device) -> list[Engine]:
    array, rng = x.numpy(), np.random.default_rng(0)
    pipeline, on_device, keys = Pipeline.from_spec([step]), x.to(device), torch.arange(len(x), device=device)
    numpy_op = {"feature_noise": lambda: _numpy_noise(array, rng, step["sigma"], step["p"]),
                "feature_mask marginal": lambda: _numpy_swap(array, rng, step["p"]),
                "swap_noise": lambda: _numpy_swap(array, rng, step["p"])}[op]
    return [Engine("numpy per batch", numpy_op, "the same operation, vectorized over the batch, one generator",
                   len(x)),
            Engine("augserve", lambda: pipeline(on_device, seed=0, keys=keys), "per-sample keys", len(x))]


def _numpy_noise(x: np.ndarray, rng: np.random.Generator, sigma: float, p: float) -> np.ndarray:
    """x + N(0, sigma^2) (unit column std) on the rows drawn with probability p."""
    applied = rng.random(len(x)) < p
    return x + rng.standard_normal(x.shape, dtype=np.float32) * (sigma * applied[:, None])


def _numpy_swap(x: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Each entry with probability p replaced by the same column of another row, drawn uniformly per entry."""
    rows, columns = x.shape
    mask = rng.random(x.shape) < p
    partner = rng.integers(0, rows - 1, x.shape)
    partner += partner >= np.arange(rows)[:, None]  # another row, never its own
    return np.where(mask, x[partner, np.arange(columns)[None, :]], x)
