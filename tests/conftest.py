"""Shared fixtures: real photos from scikit-image, as uint8 batches."""

import os

import numpy as np
import pytest
import torch
from skimage import data
from torchvision.transforms.v2 import functional as TF


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
