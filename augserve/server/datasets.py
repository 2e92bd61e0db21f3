"""Datasets the server reads itself: built-ins that ship in packages, image folders, arrays.

``StreamDataset`` walks an epoch in a deterministic shuffle of (seed, epoch); shard k
of N takes batches k, k + N, ..., so shards are disjoint and cover the epoch once.
"""

from __future__ import annotations

import hashlib
import pathlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass
class Dataset:
    name: str
    modality: str
    x: torch.Tensor  # (N, ...) uint8 images or float sequences
    labels: torch.Tensor  # (N,) int64
    num_classes: int

    def __len__(self) -> int:
        return self.x.shape[0]


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


def _folder(name: str, path: str, size: int) -> Dataset:
    """An image folder with one subfolder per class, resized and centre-cropped to ``size``."""
    from PIL import Image

    from augserve.photos import IMAGE_SUFFIXES, square

    root = pathlib.Path(path)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise ValueError(f"dataset {name}: {root} has no class subfolders")
    images, labels = [], []
    for index, label in enumerate(classes):
        for file in sorted((root / label).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                images.append(square(np.asarray(Image.open(file).convert("RGB")), size))
                labels.append(index)
    if not images:
        raise ValueError(f"dataset {name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return Dataset(name, "image", torch.stack(images), torch.tensor(labels), len(classes))


def _arrays(name: str, path: str, modality: str) -> Dataset:
    """A .npz with arrays ``x`` and ``y`` (or a .npy of samples, all labelled 0)."""
    loaded = np.load(path, allow_pickle=False)
    x, y = (loaded["x"], loaded["y"]) if isinstance(loaded, np.lib.npyio.NpzFile) else (loaded, np.zeros(len(loaded)))
    labels = torch.from_numpy(np.asarray(y)).long()
    return Dataset(name, modality, torch.from_numpy(np.ascontiguousarray(x)), labels, int(labels.max()) + 1)


def load_datasets(declared: dict) -> dict[str, Callable[[], Dataset]]:
    """Loaders by name: built-ins plus the declared ones (each loaded on first use)."""
    loaders = dict(BUILTIN)
    for name, entry in declared.items():
        if not isinstance(entry, dict):
            raise ValueError(f"datasets.{name}: expected a mapping with 'type' and 'path', got {entry!r}")
        kind = entry.get("type")
        if kind == "folder":
            loaders[name] = lambda n=name, e=entry: _folder(n, e["path"], int(e.get("size", 224)))
        elif kind == "arrays":
            loaders[name] = lambda n=name, e=entry: _arrays(n, e["path"], e.get("modality", "image"))
        else:
            raise ValueError(f"datasets.{name}.type: expected 'folder' or 'arrays', got {kind!r}")
    return loaders


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of range(size) that depends only on (seed, epoch)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
    return torch.randperm(size, generator=generator)


def shard_batches(size: int, batch_size: int, seed: int, epoch: int, shard: int, shards: int) -> list[torch.Tensor]:
    """This shard's batches of dataset indices, in order."""
    order = epoch_order(size, seed, epoch)
    batches = list(order.split(batch_size))
    return batches[shard::shards]

