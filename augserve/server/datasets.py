"""Datasets the server reads itself: built-ins that ship in packages, arrays, image and audio folders, tar shards,
tables (CSV, .npz; SMOTE-balanced per epoch: ``table_datasets``), labelled sentences (``text_datasets``).

``StreamDataset`` walks an epoch in a deterministic shuffle of (seed, epoch); shard k of N takes
the samples at positions k, k + N, ... of that order, as torch's DistributedSampler does, so shards
are disjoint, cover the epoch once and differ by at most one sample (``shard_batches``).
"""

from __future__ import annotations

import math
import hashlib
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

from augserve.server.audio_datasets import FIELDS as AUDIO_FIELDS, AudioDataset, index_audio_folder
from augserve.server.file_datasets import FileDataset, Samples, index_folder, index_shards
from augserve.server.table_datasets import FIELDS as TABLE_FIELDS, TableDataset, index_table
from augserve.server.text_datasets import FIELDS as TEXT_FIELDS, TextDataset, read_text_dataset


@dataclass
class Dataset:
    name: str
    modality: str
    x: torch.Tensor  # (N, ...) uint8 images or float sequences
    labels: torch.Tensor  # (N,) int64
    num_classes: int

    def __len__(self) -> int:
        return self.x.shape[0]

    def read(self, indices: torch.Tensor, max_pixels: int) -> Samples:
        """A batch's rows (in memory: nothing to skip), gathered by numpy: torch's ``x[indices]`` goes element by
        element on the CPU (64 rows of 3x224x224 uint8: 6.2 ms against 0.5 ms), and ``index_select`` wakes the
        intra-op thread pool, which then spins on the cores the event loop and the device worker need."""
        return Samples(torch.from_numpy(self.x.numpy()[indices.numpy()]), indices, self.labels[indices], [])


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return Dataset("digits", "image", torch.from_numpy(images), torch.from_numpy(digits.target).long(), 10)


def _photos() -> Dataset:
    from augserve.photos import SAMPLE_PHOTOS, load_images

    images, _ = load_images(None, 256)
    return Dataset("photos", "image", images, torch.arange(len(SAMPLE_PHOTOS)), len(SAMPLE_PHOTOS))


def _gunpoint() -> Dataset:
    from sktime.datasets import load_gunpoint

    series, labels = load_gunpoint(return_type="numpy3D")
    classes = sorted(set(labels))
    target = torch.tensor([classes.index(label) for label in labels])
    return Dataset("gunpoint", "timeseries", torch.from_numpy(series.astype(np.float32)), target, len(classes))


BUILTIN: dict[str, Callable[[], Dataset]] = {"digits": _digits, "photos": _photos, "gunpoint": _gunpoint}


def _arrays(name: str, path: str, modality: str) -> Dataset:
    """A .npz with arrays ``x`` and ``y`` (or a .npy of samples, all labelled 0)."""
    loaded = np.load(path, allow_pickle=False)
    x, y = (loaded["x"], loaded["y"]) if isinstance(loaded, np.lib.npyio.NpzFile) else (loaded, np.zeros(len(loaded)))
    labels = torch.from_numpy(np.asarray(y)).long()
    return Dataset(name, modality, torch.from_numpy(np.ascontiguousarray(x)), labels, int(labels.max()) + 1)


FIELDS = {"folder": {"type", "path"}, "shards": {"type", "shards", "label_field", "num_classes"},
          "arrays": {"type", "path", "modality"}, "audio": AUDIO_FIELDS, "table": TABLE_FIELDS,
          "text": TEXT_FIELDS}


def _indexed(name: str, entry: dict) -> FileDataset:
    if entry["type"] == "folder":
        return index_folder(name, entry["path"])
    return index_shards(name, entry["shards"], entry.get("label_field", "label"), entry.get("num_classes"))


Served = Dataset | FileDataset | AudioDataset | TableDataset | TextDataset


def load_datasets(declared: dict, device: torch.device | None = None) -> dict[str, Callable[[], Served]]:
    """Loaders by name: built-ins plus the declared ones. Arrays load on first use, audio folders decode then,
    tables read their rows then (and find SMOTE's neighbours on ``device``); folders and shards are indexed now,
    tables' headers read, text datasets read whole, so a wrong path, an unlabelled shard, a missing label column,
    a bad line or too many files stops start-up with a message naming it."""
    loaders: dict[str, Callable[[], Served]] = dict(BUILTIN)
    for name, entry in declared.items():
        kind = entry.get("type") if isinstance(entry, dict) else None
        if kind not in FIELDS:
            raise ValueError(f"datasets.{name}.type: expected one of {', '.join(FIELDS)}, got {kind!r}")
        unknown = sorted(set(entry) - FIELDS[kind])
        if unknown:
            moved = " (folders are read at their own sizes: the pipeline's first step fixes the size)" \
                if unknown == ["size"] else ""
            raise ValueError(f"datasets.{name}: unknown field '{unknown[0]}' for type {kind} "
                             f"(allowed: {', '.join(sorted(FIELDS[kind]))}){moved}")
        if kind == "arrays":
            loaders[name] = lambda n=name, e=entry: _arrays(n, e["path"], e.get("modality", "image"))
        elif kind == "audio":
            loaders[name] = index_audio_folder(name, entry)  # an AudioFolder: decodes when first called
        elif kind == "table":
            loaders[name] = index_table(name, entry, device)  # a TableSource: reads its rows when first called
        elif kind == "text":
            loaders[name] = read_text_dataset(name, entry)  # read whole now: a TextDataset is its own loader
        else:
            indexed = _indexed(name, entry)
            loaders[name] = lambda d=indexed: d
    return loaders


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of range(size) that depends only on (seed, epoch)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
    return torch.randperm(size, generator=generator)


class ShardBatch(NamedTuple):
    indices: torch.Tensor  # dataset indices, in stream order
    padding: torch.Tensor  # bool per index: a repeat of one of the epoch's first samples, there to even the shards


def shard_batches(size: int, batch_size: int, seed: int, epoch: int, shard: int, shards: int,
                  even: bool = False) -> list[ShardBatch]:
    """This shard's batches, in order: the samples at positions ``shard``, ``shard + shards``, ... of the epoch's
    order (DistributedSampler's split), cut into batches of ``batch_size``, the last one possibly short.

    Samples rather than whole batches are dealt out so that ``even`` can make every shard the same length with
    as little padding as DistributedSampler: the order is padded with its own first samples to a multiple of
    ``shards`` (fewer than ``shards`` extra), so every shard has ceil(size / shards) samples and the same
    batches, and data-parallel ranks end an epoch together. The padding is at most one sample per shard, its
    last; no shard holds an index twice. Not ``even``: the epoch exactly once, shards differing by one sample.
    """
    order = epoch_order(size, seed, epoch)
    total = math.ceil(size / shards) * shards if even else size
    positions = torch.arange(shard, max(shard, total), shards)  # this shard's only (``shards`` may exceed ``size``)
    if not len(positions):
        return []  # split would give one empty batch
    mine, padding = order[positions % size], positions >= size  # past the epoch's end: its first samples again
    return [ShardBatch(i, p) for i, p in zip(mine.split(batch_size), padding.split(batch_size))]
