"""In-process SMOTE against imbalanced-learn: the same counts, rows on the segments SMOTE draws, uniform steps,
fresh rows per epoch that replay in any order, Borderline-1's danger set, SMOTE-NC's categories."""

from collections import Counter

import numpy as np
import pytest
import torch
from imblearn.over_sampling import SMOTE, BorderlineSMOTE
from scipy import stats
from sklearn.neighbors import NearestNeighbors

from augserve.smote import Smote, nearest


def blobs(counts, features=4, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(c * spread, 1.0, size=(n, features)) for c, n in enumerate(counts)])
    return x.astype(np.float32), np.repeat(np.arange(len(counts)), counts)


def segments(x, members, k, extra=None):
    """Each (row, neighbour) pair of ``members``: its k nearest same-class rows by sklearn (``extra``: columns
    appended for the distance only)."""
    data = x[members] if extra is None else np.hstack([x[members], extra])
    near = NearestNeighbors(n_neighbors=k + 1).fit(data).kneighbors(data, return_distance=False)[:, 1:]
    return members, members[near]  # (n,), (n, k) dataset rows


def on_segments(points, x, starts, ends):
    """For each point and segment start -> end: the point's distance from the segment's line, and its step u."""
    a, b = x[starts].astype(np.float64), x[ends].astype(np.float64)
    d = b - a
    u = np.einsum("psf,sf->ps", points[:, None, :] - a[None], d) / np.einsum("sf,sf->s", d, d)[None]
    return np.linalg.norm(points[:, None, :] - (a[None] + u[..., None] * d[None]), axis=2), u


def closest(gap, u):
    rows, best = np.arange(len(gap)), gap.argmin(1)
    return best, gap[rows, best], u[rows, best]


@pytest.mark.parametrize("counts, strategy", [
    ((300, 60, 25), "auto"), ((300, 60, 25), "minority"), ((300, 60, 25), "not minority"),
    ((300, 60, 25), {1: 100, 2: 300}), ((400, 50), 0.5), ((400, 50), 1.0),
])
def test_class_counts_are_imbalanced_learns(counts, strategy):
    x, y = blobs(counts)
    _, expected = SMOTE(sampling_strategy=strategy, random_state=0).fit_resample(x, y)
    _, y_epoch, synthetic = Smote(x, y, sampling_strategy=strategy).epoch(0)
    assert Counter(y_epoch.tolist()) == Counter(expected.tolist())
    assert not synthetic[:len(x)].any() and synthetic[len(x):].all()
    assert np.array_equal(y_epoch[:len(x)], y)


def test_synthetic_rows_lie_between_a_row_and_one_of_its_k_nearest_with_uniform_steps():
    x, y = blobs((2000, 80), features=5)
    x_epoch, y_epoch, synthetic = Smote(x, y, k_neighbors=5, seed=7).epoch(2)
    starts, ends = segments(x, np.flatnonzero(y == 1), 5)
    pairs_from, pairs_to = np.repeat(starts, 5), ends.reshape(-1)
    points = x_epoch[synthetic].astype(np.float64)
    assert len(points) == 1920 and (y_epoch[synthetic] == 1).all()
    used, gap, u = closest(*on_segments(points, x, pairs_from, pairs_to))
    assert gap.max() < 1e-4
    assert (u > -1e-5).all() and (u < 1 + 1e-5).all()
    assert stats.kstest(np.clip(u, 0, 1), "uniform").pvalue > 0.001
    assert len(np.unique(used)) > 0.9 * len(pairs_from)  # every row and neighbour is drawn, not a few


def test_neighbours_are_sklearns_in_chunks_of_any_size():
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(300, 6)))
    expected = NearestNeighbors(n_neighbors=6).fit(x.numpy()).kneighbors(x.numpy(), return_distance=False)[:, 1:]
    for max_bytes in (1, 8 * 300 * 7, 1 << 26):
        found = nearest(x, x, 5, torch.arange(300), max_bytes=max_bytes)
        assert np.array_equal(found.numpy(), np.sort(expected, axis=1))


def test_each_epoch_has_new_rows_and_any_subset_replays_bit_identically():
    x, y = blobs((200, 40, 30))
    smote = Smote(x, y, seed=3)
    x0, y0, s0 = smote.epoch(0)
    x1, _, _ = smote.epoch(1)
    assert np.array_equal(x0[:len(x)], x) and np.array_equal(x1[:len(x)], x)
    assert not np.isclose(x0[s0], x1[s0]).all(axis=1).any()  # no synthetic row the same in the next epoch
    order = np.random.default_rng(0).permutation(len(x0))[:97]
    again, labels, flags = smote.rows(0, order)
    assert np.array_equal(again, x0[order]) and np.array_equal(labels, y0[order]) and np.array_equal(flags, s0[order])
    assert np.array_equal(Smote(x, y, seed=3).epoch(0)[0], x0)  # a new instance: the same epoch
    assert not np.array_equal(Smote(x, y, seed=4).epoch(0)[0][s0], x0[s0])  # another seed: other rows
    as_torch = Smote(torch.from_numpy(x), torch.from_numpy(y), seed=3).rows(0, torch.from_numpy(order))
    assert isinstance(as_torch[0], torch.Tensor) and torch.equal(as_torch[0], torch.from_numpy(x0[order]))


def test_borderline_1_draws_only_from_the_rows_imbalanced_learn_finds_in_danger():
    x, y = blobs((300, 60), features=3, spread=1.5, seed=2)
    reference = BorderlineSMOTE(kind="borderline-1", random_state=0)
    _, expected = reference.fit_resample(x, y)
    members = np.flatnonzero(y == 1)
    danger = members[reference._in_danger_noise(reference.nn_m_, x[members], 1, y, kind="danger")]
    smote = Smote(x, y, kind="borderline-1")
    assert 0 < len(danger) < len(members) and np.array_equal(smote.in_danger[1].numpy(), danger)
    x_epoch, y_epoch, synthetic = smote.epoch(0)
    assert Counter(y_epoch.tolist()) == Counter(expected.tolist())
    starts, ends = segments(x, members, 5)
    in_danger = np.isin(starts, danger)
    _, gap, _ = closest(*on_segments(x_epoch[synthetic].astype(np.float64), x, np.repeat(starts[in_danger], 5),
                                     ends[in_danger].reshape(-1)))
    assert gap.max() < 1e-4  # every new row starts from a row in danger


def test_smote_nc_takes_the_most_frequent_category_among_the_neighbours():
    rng = np.random.default_rng(5)
    x, y = blobs((400, 60), features=3, seed=5)
    categories = rng.integers(0, 3, size=(len(x), 2)).astype(np.float32)
    table = np.hstack([x[:, :1], categories[:, :1], x[:, 1:], categories[:, 1:]])  # columns 1 and 4 categorical
    smote = Smote(table, y, categorical=[1, 4], k_neighbors=5)
    x_epoch, _, synthetic = smote.epoch(1)
    members = np.flatnonzero(y == 1)
    continuous, categorical = [0, 2, 3], [1, 4]
    median = np.median(table[members][:, continuous].astype(np.float64).std(0))
    ohe = np.hstack([np.eye(3)[table[members, c].astype(int)] for c in categorical]) * median / np.sqrt(2)
    starts, ends = segments(table[:, continuous].astype(np.float64), members, 5, extra=ohe)  # SMOTE-NC's metric
    points = x_epoch[synthetic]
    gap, _ = on_segments(points[:, continuous].astype(np.float64), table[:, continuous], np.repeat(starts, 5),
                         ends.reshape(-1))
    assert gap.min(1).max() < 1e-4
    ties = 0
    for row, matches in enumerate(gap < 1e-4):  # a segment may be met from either end: any of its starts
        neighbours = ends[np.flatnonzero(matches) // 5]  # (starts, k) the neighbours of each start
        votes = np.stack([(table[neighbours, c][..., None] == np.arange(3)).sum(1) for c in categorical])
        most = votes == votes.max(2, keepdims=True)  # (columns, starts, categories)
        chosen = points[row, categorical].astype(int)
        assert most[np.arange(2)[:, None], :, chosen[:, None]].all(0).any()  # one start explains every column
        ties += int((most[:, 0].sum(1) > 1).sum())
    assert ties > 20  # ties happen, and each is broken towards one of the tied categories


def test_clear_refusals():
    x, y = blobs((50, 1))
    with pytest.raises(ValueError, match="class 1 has 1 row; SMOTE needs at least 2 rows"):
        Smote(x, y)
    x, y = blobs((50, 10, 10))
    with pytest.raises(ValueError, match="a float only for two classes"):
        Smote(x, y, sampling_strategy=0.5)
    with pytest.raises(ValueError, match=r"sampling_strategy\[1\]: expected at least the class's own 10 rows"):
        Smote(x, y, sampling_strategy={1: 5})
    with pytest.raises(ValueError, match="kind: expected one of regular, borderline-1"):
        Smote(x, y, kind="borderline-2")
    x, y = blobs((50, 3))  # class 1's 2 other rows are a row's neighbours (imbalanced-learn refuses k >= 3)
    assert Counter(Smote(x, y).epoch(0)[1].tolist()) == {0: 50, 1: 50}
