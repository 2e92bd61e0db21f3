"""Shared fixtures: real photos from scikit-image, as uint8 batches; small IDX files (the MNIST layout)."""

import faulthandler
import gzip
import os
import pathlib
import struct

import numpy as np
import pytest
import torch
from skimage import data
from torchvision.transforms.v2 import functional as TF


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """A crash prints the crashing thread's stack alone: beside every thread's, a CI log's excerpt cut it."""
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key
    except ImportError:  # pytest's own layout: its default (every thread) stays
        return
    if faulthandler.is_enabled() and fault_handler_stderr_fd_key in config.stash:
        faulthandler.enable(file=config.stash[fault_handler_stderr_fd_key], all_threads=False)


def _photo(name: str, size: int) -> torch.Tensor:
    image = torch.from_numpy(np.ascontiguousarray(getattr(data, name)())).permute(2, 0, 1)
    return TF.center_crop(TF.resize(image, [size], antialias=True), [size, size])


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """(4, 3, 96, 96) uint8: astronaut, coffee, chelsea, rocket."""
    return torch.stack([_photo(n, 96) for n in ("astronaut", "coffee", "chelsea", "rocket")])


@pytest.fixture(scope="session")
def photo_batch(photos) -> torch.Tensor:
    """(16, 3, 96, 96) uint8: each photo four times, so identical images share a batch."""
    return photos.repeat(4, 1, 1, 1)


@pytest.fixture(scope="session", autouse=True)
def index_cache(tmp_path_factory):
    """Shard indexes go to a temporary folder, not the user's cache (servers the tests start inherit it)."""
    os.environ["AUGSERVE_CACHE_DIR"] = str(tmp_path_factory.mktemp("index-cache"))


def write_idx(path: pathlib.Path, array: np.ndarray, compress: bool) -> None:
    """``array`` as an IDX file of unsigned bytes (gzipped when ``compress``), as MNIST ships."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    (gzip.open if compress else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_folder(tmp_path):
    """A Fashion-MNIST folder of 12 training images (labels 0..9, 0, 1; gzipped) and 5 test images (raw)."""
    generator = np.random.default_rng(0)
    for split, count, compress in (("train", 12, True), ("t10k", 5, False)):
        suffix = ".gz" if compress else ""
        write_idx(tmp_path / f"{split}-images-idx3-ubyte{suffix}", generator.integers(0, 256, (count, 28, 28)), compress)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte{suffix}", np.arange(count) % 10, compress)
    return tmp_path


def _wordnet_missing() -> str:
    from augserve.text import wordnet
    return wordnet.missing()


# The text steps read WordNet from Debian (``make test`` installs it); where it could not be, they say so and skip.
needs_wordnet = pytest.mark.skipif(bool(_wordnet_missing()), reason=_wordnet_missing() or "WordNet is installed")
