"""Small image sets for previews and the built-in served datasets: scikit-image's photos or a folder."""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MAX_IMAGES = 8


def square(image: np.ndarray, size: int) -> torch.Tensor:
    """HWC uint8 (or grey HW) -> (3, size, size) uint8, resized on the shorter side and centre-cropped."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    tensor = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)
    tensor = TF.resize(tensor, [size], antialias=True)
    return TF.center_crop(tensor, [size, size])


def load_images(images_dir: str | None, size: int) -> tuple[torch.Tensor, list[str]]:
    """A uint8 batch from a folder, or from scikit-image's sample photos."""
    if images_dir is None:
        from skimage import data

        names = list(SAMPLE_PHOTOS)
        arrays = [getattr(data, name)() for name in names]
    else:
        from PIL import Image

        folder = pathlib.Path(images_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"--images: {folder} is not a folder")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:MAX_IMAGES]
        if not paths:
            raise FileNotFoundError(f"--images: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
        names = [p.name for p in paths]
        arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return torch.stack([square(a, size) for a in arrays]), names
