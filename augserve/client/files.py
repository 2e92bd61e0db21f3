"""``EncodedImageFolder``: a DataLoader dataset whose workers only read files; the server decodes them."""

from __future__ import annotations

import pathlib

import numpy as np

from augserve.transport import ENCODED_SUFFIXES


class EncodedImageFolder:
    """Image files in one subfolder per class (torchvision's ``ImageFolder`` layout), read as bytes.

    Items are ``(file bytes, class index, dataset index)``: the index follows the sample through
    shuffles, so ``RemoteAugment`` keys its augmentation by it. Use ``collate_encoded`` as the
    DataLoader's ``collate_fn`` (the files differ in size, so they stay a list). A plain map-style
    dataset (``len`` and indexing): torch's DataLoader takes it, and so does any other loader.
    """

    def __init__(self, root: str | pathlib.Path, extensions: tuple[str, ...] = ENCODED_SUFFIXES):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"EncodedImageFolder: {self.root} is not a folder")
        self.classes = sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())
        self.samples = [(path, label) for label, name in enumerate(self.classes)
                        for path in sorted((self.root / name).rglob("*")) if path.suffix.lower() in extensions]
        if not self.samples:
            raise FileNotFoundError(f"EncodedImageFolder: no {', '.join(extensions)} files in class subfolders "
                                    f"of {self.root}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[bytes, int, int]:
        path, label = self.samples[index]
        return path.read_bytes(), label, index


def collate_encoded(items: list[tuple[bytes, int, int]]) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Files as a list, labels and indices as int64 arrays: a ``(x, y, index)`` batch for ``RemoteAugment``."""
    files, labels, indices = zip(*items)
    return list(files), np.array(labels, dtype=np.int64), np.array(indices, dtype=np.int64)
