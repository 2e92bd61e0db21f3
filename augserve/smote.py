"""SMOTE as imbalanced-learn defines it, drawn afresh every epoch and replayable row by row.

>>> smote = Smote(x, y, k_neighbors=5)          # neighbours found once, here
>>> x_epoch, y_epoch, synthetic = smote.epoch(3)  # the table, then each minority class's new rows

An epoch is the N original rows (indices 0..N-1) followed by the synthetic ones (indices N..M-1), class by
class in sorted order, as many per class as ``sampling_strategy`` asks (imbalanced-learn's counts). Synthetic
row j of an epoch is ``x_i + u * (x_nn - x_i)``: ``i`` uniform among its class's rows (Borderline-1: among the
rows in danger), ``x_nn`` uniform among i's k nearest rows of its class, ``u`` ~ U[0, 1), all three drawn from
augserve's counter-based stream at (seed, ``sample_keys(j, epoch)``), so every epoch has new rows, and any row
of any epoch is recomputed bit-identically on its own (``rows``): a gather and a lerp, no pass over the data.

Where imbalanced-learn draws from one generator for the whole resample, each row here has its own draws, so the
rows differ from imbalanced-learn's for the same ``random_state`` while following the same distribution.

- ``kind="borderline-1"`` (BorderlineSMOTE): only a class's rows "in danger" are drawn as ``x_i``: half or more,
  but not all, of their ``m_neighbors`` nearest rows over every class are of another class. A class with no row
  in danger gets no new rows (as imbalanced-learn does), so its count stays short of the target.
- Categorical columns (SMOTE-NC): the distance adds, per column whose categories differ, the square of the median
  of the oversampled class's continuous columns' std (population std; imbalanced-learn 0.12+); a synthetic row's
  category in each such column is the most frequent among the k neighbours of ``x_i`` (ties drawn uniformly).
- A class that is oversampled needs two rows (one and a neighbour): one with a single row is refused. One with
  2..k rows uses all its other rows as neighbours, where imbalanced-learn refuses (it needs more than k).
- Nearest neighbours: with torch, in chunks of at most ``MAX_DISTANCE_BYTES`` (never an all-pairs matrix), on
  ``device`` (a GPU where given): float32 distances pick a few more candidates than k, their exact float64
  distances pick the k (the lower index among equal ones), so every device finds the same neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch

from augserve.random import Draw, SampleRng, sample_keys

KINDS = ("regular", "borderline-1")
STRATEGIES = ("auto", "minority", "not minority", "not majority", "all")
MAX_DISTANCE_BYTES = 4 << 20  # one chunk of the distance matrix (reused; 4 MiB: 1.25x faster than 16)
CANDIDATES = 8  # more than k picked by float32 distances, then ranked exactly
SYNTHESIS_ROWS = 1 << 14  # rows made at once by ``epoch`` (16384: 4x faster than 65536 on a busy 2-core host)
MAX_EPOCH_ROWS = (1 << 32) - 1  # sample keys hold the index in 32 bits
SLOT = 0x534D4F54  # "SMOT": the stream's fork, apart from any pipeline step's slot (small integers)


class SmoteDraw(Draw):
    BASE = 0  # the row a synthetic row starts from
    NEIGHBOUR = 1  # which of its k neighbours it moves towards
    STEP = 2  # how far: u ~ U[0, 1)
    TIES = 3  # categorical columns: the order in which tied categories are taken


def class_counts(y: np.ndarray) -> dict[Any, int]:
    labels, counts = np.unique(y, return_counts=True)
    return {label.item(): int(count) for label, count in zip(labels, counts)}


def sampling_targets(counts: Mapping[Any, int], strategy: Any = "auto") -> dict[Any, int]:
    """New rows per class, as imbalanced-learn's over-samplers count them (``check_sampling_strategy``): a name
    (auto = not majority, minority, not minority, all), a float (binary only: minority = int(majority * ratio)),
    or a dict class -> rows wanted (at least the class's own)."""
    majority = max(counts, key=counts.get)  # the first of the largest, in sorted order
    minority = min(counts, key=counts.get)
    most = counts[majority]
    if isinstance(strategy, str):
        chosen = {"auto": lambda c: c != majority, "not majority": lambda c: c != majority,
                  "minority": lambda c: c == minority, "not minority": lambda c: c != minority,
                  "all": lambda c: True}.get(strategy)
        if chosen is None:
            raise ValueError(f"sampling_strategy: expected one of {', '.join(STRATEGIES)}, a float or a dict "
                             f"class -> rows, got {strategy!r}")
        return {c: most - n for c, n in counts.items() if chosen(c)}
    if isinstance(strategy, Mapping):
        wanted = {_class_of(key, counts): value for key, value in strategy.items()}
        for c, value in wanted.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < counts[c]:
                raise ValueError(f"sampling_strategy[{c!r}]: expected at least the class's own {counts[c]} rows "
                                 f"(over-sampling adds rows), got {value!r}")
        return {c: int(value) - counts[c] for c, value in sorted(wanted.items())}
    if isinstance(strategy, (float, int)) and not isinstance(strategy, bool):
        if len(counts) != 2:
            raise ValueError(f"sampling_strategy: a float only for two classes (this table has {len(counts)}); "
                             "give a dict class -> rows")
        if not 0 < strategy <= 1:
            raise ValueError(f"sampling_strategy: expected a ratio minority/majority in (0, 1], got {strategy!r}")
        new = {c: int(most * strategy - n) for c, n in counts.items() if c != majority}
        if any(n <= 0 for n in new.values()):
            raise ValueError(f"sampling_strategy: ratio {strategy} is at or below the classes' own ratio "
                             f"{counts[minority] / most:.4g}; over-sampling only adds rows: raise it")
        return new
    raise ValueError(f"sampling_strategy: expected one of {', '.join(STRATEGIES)}, a float or a dict class -> rows, "
                     f"got {strategy!r}")


def _class_of(key: Any, counts: Mapping[Any, int]) -> Any:
    """A dict key as a class: itself, or the class it spells (YAML and JSON keys are strings)."""
    if key in counts:
        return key
    named = [c for c in counts if str(c) == str(key)]
    if not named:
        raise ValueError(f"sampling_strategy: class {key!r} is not in the table (classes: "
                         f"{', '.join(map(str, counts))})")
    return named[0]


def _median(values: torch.Tensor) -> float:
    return float(np.median(values.numpy()))


def nearest(queries: torch.Tensor, reference: torch.Tensor, k: int, self_index: torch.Tensor | None = None,
            categorical: Sequence[int] = (), penalty: float = 0.0, device: torch.device | str | None = None,
            max_bytes: int = MAX_DISTANCE_BYTES) -> torch.Tensor:
    """Each query row's ``k`` nearest reference rows (Q, k) int64 on the CPU, in index order; a query's own row
    (``self_index``: its index in ``reference``) is never its neighbour. Squared Euclidean distance over the
    continuous columns plus ``penalty`` per categorical column whose values differ.

    A chunk of queries at a time (at most ``max_bytes`` of distances): float32 distances by a matrix product
    pick ``k + CANDIDATES`` candidates, whose exact distances (float64, by differences) then pick the k,
    the lower index first among equals: the same neighbours on any device."""
    device = torch.device(device or "cpu")
    continuous = [c for c in range(reference.shape[1]) if c not in set(categorical)]
    # centred first (in float64): far from zero, float32's |r|^2 - 2 q.r would drown the differences
    centre = reference.to(torch.float64).mean(0)
    exact_ref = (reference.to(torch.float64) - centre).to(device)
    ref = exact_ref.to(torch.float32)
    ref_cont, ref_cat = ref[:, continuous].contiguous(), ref[:, list(categorical)]
    ref_norm = ref_cont.pow(2).sum(1)  # |q|^2 is the same along a query's row: left out of the ranking
    chunk = max(1, min(len(queries), max_bytes // (4 * max(1, len(reference)))))
    buffer = torch.empty(chunk, len(reference), dtype=torch.float32, device=device)  # reused: no page faults
    wide = min(k + CANDIDATES, len(reference) - (self_index is not None))
    found = []
    for start in range(0, len(queries), chunk):
        here = (queries[start:start + chunk].to(torch.float64) - centre).to(device)
        q = here.to(torch.float32)
        d = torch.addmm(ref_norm, q[:, continuous], ref_cont.T, alpha=-2.0, out=buffer[:len(q)])
        for at, c in enumerate(categorical):
            d.add_((q[:, c, None] != ref_cat[None, :, at]).to(torch.float32), alpha=penalty)
        if self_index is not None:
            d[torch.arange(len(q), device=device), self_index[start:start + chunk].to(device)] = math.inf
        candidates = d.topk(wide, dim=1, largest=False, sorted=False).indices.sort(1).values  # (q, wide)
        near, here = exact_ref[candidates], here[:, None, :]  # (q, wide, F) and (q, 1, F), float64
        exact = (near[..., continuous] - here[..., continuous]).pow(2).sum(2)
        if categorical:
            exact += penalty * (near[..., list(categorical)] != here[..., list(categorical)]).sum(2)
        best = exact.sort(dim=1, stable=True).indices[:, :k]  # ties: the lower index (candidates are in index order)
        found.append(candidates.gather(1, best).sort(1).values.cpu())
    return torch.cat(found) if found else torch.zeros(0, k, dtype=torch.int64)


class Smote:
    """SMOTE (regular, Borderline-1, SMOTE-NC) over ``x`` (N, F) and labels ``y`` (N,): neighbours now, rows per
    epoch. ``epoch(e)`` -> (x float32 (M, F), y (M,), synthetic bool (M,)); ``rows(e, indices)`` the same for
    some indices of that epoch. numpy in, numpy out; torch in, torch out (on the CPU)."""

    def __init__(self, x: Any, y: Any, k_neighbors: int = 5, sampling_strategy: Any = "auto",
                 kind: str = "regular", categorical: Sequence[int] = (), seed: int = 0, m_neighbors: int = 10,
                 device: torch.device | str | None = None, name: str = "table",
                 class_names: Sequence[str] | None = None):
        self._numpy = not isinstance(x, torch.Tensor)
        x = torch.as_tensor(np.asarray(x) if self._numpy else x).detach().cpu()
        y_np = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
        if x.dim() != 2 or not len(x) or not x.shape[1]:
            raise ValueError(f"{name}: expected rows x (N, F) with N, F >= 1, got shape {tuple(x.shape)}")
        if y_np.shape != (len(x),):
            raise ValueError(f"{name}: expected one label per row: y of shape ({len(x)},), got {y_np.shape}")
        if not x.dtype.is_floating_point and x.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                             torch.uint8):
            raise ValueError(f"{name}: expected numeric rows, got {x.dtype}")
        self.x = x.to(torch.float32).contiguous()
        if not torch.isfinite(self.x).all():
            raise ValueError(f"{name}: rows hold NaN or infinity (SMOTE needs every value)")
        for field, value, low in (("k_neighbors", k_neighbors, 1), ("m_neighbors", m_neighbors, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= 1000:
                raise ValueError(f"{field}: expected an integer in [1, 1000], got {value!r}")
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 1 << 64:
            raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
        features = self.x.shape[1]
        self.categorical = tuple(sorted({int(c) + features if int(c) < 0 else int(c) for c in categorical}))
        if any(not 0 <= c < features for c in self.categorical):
            raise ValueError(f"categorical: columns must lie in [0, {features}), got {list(categorical)}")
        if len(self.categorical) == features:
            raise ValueError("categorical: every column is categorical; SMOTE-NC needs at least one continuous "
                             "column (imbalanced-learn's SMOTEN is for all-categorical tables)")
        self.y, self.kind, self.seed = y_np, kind, int(seed)
        self._class_names = class_names  # by label (codes 0..C-1), for messages
        self.k_neighbors, self.m_neighbors = int(k_neighbors), int(m_neighbors)
        self.counts = class_counts(y_np)
        targets = sampling_targets(self.counts, sampling_strategy)
        self._plan(targets, torch.device(device or "cpu"), name)

    # -- set-up: who is drawn from, and their neighbours ------------------------------------------------------
    def _plan(self, targets: dict[Any, int], device: torch.device, name: str) -> None:
        continuous = torch.tensor([c for c in range(self.x.shape[1]) if c not in self.categorical])
        classes, added, sources, neighbours, widths, in_danger = [], [], [], [], [], {}
        for label, count in targets.items():
            if count <= 0:
                continue
            members = torch.from_numpy(np.flatnonzero(self.y == label))
            if len(members) < 2:
                raise ValueError(f"{name}: class {self._named(label)} has {len(members)} row; SMOTE needs at least 2 "
                                 "rows of a class it oversamples (a row and a neighbour): add rows, or leave the "
                                 "class out (sampling_strategy as a dict of the classes to raise)")
            rows = self.x[members]
            std = rows[:, continuous].to(torch.float64).std(0, correction=0)
            penalty = _median(std) ** 2 if self.categorical else 0.0
            k = min(self.k_neighbors, len(members) - 1)
            source = torch.arange(len(members))
            if self.kind == "borderline-1":
                source = self._danger(members, penalty, device)
                in_danger[label] = members[source]
                if not len(source):
                    continue  # imbalanced-learn: no row in danger, no new rows
            local = nearest(rows[source], rows, k, source, self.categorical, penalty, device)
            classes.append(label)
            added.append(count)
            sources.append(members[source])
            neighbours.append(torch.nn.functional.pad(members[local], (0, self.k_neighbors - k), value=-1))
            widths.append(k)
        self.targets = dict(zip(classes, added))
        self.in_danger = in_danger  # Borderline-1: each class's rows in danger (dataset indices)
        self.size = len(self.x) + sum(added)
        if self.size > MAX_EPOCH_ROWS:
            raise ValueError(f"{name}: an epoch of {self.size} rows, more than {MAX_EPOCH_ROWS}; ask "
                             "sampling_strategy for fewer")
        self.block_labels = np.array(classes, dtype=self.y.dtype)
        self._offsets = torch.tensor(np.cumsum([len(self.x), *added])[:-1], dtype=torch.int64)  # block starts
        self._source_start = torch.tensor([0, *np.cumsum([len(s) for s in sources])], dtype=torch.int64)[:-1]
        self._source_count = torch.tensor([len(s) for s in sources], dtype=torch.int64)
        self._widths = torch.tensor(widths, dtype=torch.int64)
        self._sources = torch.cat(sources) if sources else torch.zeros(0, dtype=torch.int64)
        self._neighbours = torch.cat(neighbours) if neighbours else torch.zeros(0, self.k_neighbors,
                                                                                   dtype=torch.int64)

    def _named(self, label: Any) -> str:
        return repr(label if self._class_names is None else self._class_names[label])

    def _danger(self, members: torch.Tensor, penalty: float, device: torch.device) -> torch.Tensor:
        """Positions in ``members`` of the rows in danger: of their m nearest rows over every class, at least
        half but not all are of another class."""
        m = min(self.m_neighbors, len(self.x) - 1)
        near = nearest(self.x[members], self.x, m, members, self.categorical, penalty, device)
        label = self.y[members[0].item()]
        others = torch.from_numpy(self.y[near.numpy()] != label).sum(1)
        return torch.nonzero((others >= m / 2) & (others < m)).flatten()

    # -- per epoch -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.size

    @property
    def epoch_counts(self) -> dict[Any, int]:
        """Rows per class in every epoch."""
        return {c: n + self.targets.get(c, 0) for c, n in self.counts.items()}

    def labels(self, indices: Any) -> np.ndarray:
        """The labels of epoch indices (the same in every epoch)."""
        j = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        out = np.empty(len(j), dtype=self.y.dtype)
        original = j < len(self.x)
        out[original.numpy()] = self.y[j[original].numpy()]
        block = torch.searchsorted(self._offsets, j[~original], right=True) - 1
        out[(~original).numpy()] = self.block_labels[block.numpy()]
        return out

    def epoch(self, epoch: int, seed: int | None = None):
        """Every row of ``epoch`` in index order (originals first): x (M, F) float32, y (M,), synthetic (M,)."""
        x = torch.empty(self.size, self.x.shape[1], dtype=torch.float32)
        x[:len(self.x)] = self.x
        for start in range(len(self.x), self.size, SYNTHESIS_ROWS):
            stop = min(start + SYNTHESIS_ROWS, self.size)
            x[start:stop] = self._synthesize(torch.arange(start, stop), epoch, seed)
        synthetic = torch.arange(self.size) >= len(self.x)
        return self._out(x, self.labels(np.arange(self.size)), synthetic)

    def rows(self, epoch: int, indices: Any, seed: int | None = None):
        """Rows ``indices`` of ``epoch`` (any order, any subset): the same bits as ``epoch(epoch)`` has there."""
        j = torch.as_tensor(np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices),
                            dtype=torch.int64).flatten()
        if len(j) and (int(j.min()) < 0 or int(j.max()) >= self.size):
            raise IndexError(f"indices: expected 0 to {self.size - 1} (an epoch's rows), got "
                             f"{int(j.min())}..{int(j.max())}")
        original = j < len(self.x)
        x = torch.empty(len(j), self.x.shape[1], dtype=torch.float32)
        x[original] = self.x[j[original]]
        if not original.all():
            x[~original] = self._synthesize(j[~original], epoch, seed)
        return self._out(x, self.labels(j.numpy()), ~original)

    def _out(self, x: torch.Tensor, y: np.ndarray, synthetic: torch.Tensor):
        if self._numpy:
            return x.numpy(), y, synthetic.numpy()
        return x, torch.from_numpy(y), synthetic

    def _synthesize(self, j: torch.Tensor, epoch: int, seed: int | None) -> torch.Tensor:
        """Synthetic rows ``j`` (indices >= N) of ``epoch``: a gather of two rows and a lerp per row."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or not 0 <= epoch < 1 << 32:
            raise ValueError(f"epoch: expected an integer in [0, 2**32), got {epoch!r}")  # StreamDataset's uint32
        block = torch.searchsorted(self._offsets, j, right=True) - 1
        rng = SampleRng(self.seed if seed is None else seed, sample_keys(j, int(epoch))).fork(SLOT)
        base = self._source_start[block] + ((rng.bits(SmoteDraw.BASE) * self._source_count[block]) >> 32)
        width = self._widths[block]
        column = (rng.bits(SmoteDraw.NEIGHBOUR) * width) >> 32
        step = rng.uniform(SmoteDraw.STEP)
        near = self._neighbours[base]  # (n, k) dataset rows, -1 past the class's own k
        start, end = self.x[self._sources[base]], self.x[near.gather(1, column[:, None]).squeeze(1)]
        x = torch.addcmul(start, step[:, None], end - start)  # x_i + u * (x_nn - x_i)
        if self.categorical:
            x[:, list(self.categorical)] = self._vote(near, width, rng)
        return x

    def _vote(self, near: torch.Tensor, width: torch.Tensor, rng: SampleRng) -> torch.Tensor:
        """Each categorical column's most frequent value among the k neighbours; ties: the first met in a random
        order of the neighbours (tied categories are met equally often, so each is as likely)."""
        k = near.shape[1]
        order = rng.permutation(SmoteDraw.TIES, k)  # (n, k)
        near = near.gather(1, order)
        valid = order < width[:, None]
        values = self.x[near.clamp(min=0)][:, :, list(self.categorical)]  # (n, k, c)
        same = (values[:, :, None, :] == values[:, None, :, :]) & valid[:, None, :, None]
        votes = same.sum(2).masked_fill(~valid[:, :, None], -1)  # (n, k, c): neighbours sharing each one's value
        first = votes.argmax(1, keepdim=True)  # the first of the most frequent, in the drawn order
        return values.gather(1, first).squeeze(1)
