"""Small image sets for previews and the built-in served datasets: scikit-image's photos or a folder."""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from augserve.transport import ENCODED_SUFFIXES

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


def _image_paths(images_dir: str) -> list[pathlib.Path]:
    folder = pathlib.Path(images_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images: {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:MAX_IMAGES]
    if not paths:
        raise FileNotFoundError(f"--images: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return paths


def read_image_files(images_dir: str) -> tuple[list[bytes], list[str]]:
    """The first image files of a folder, undecoded, and their names."""
    paths = [p for p in _image_paths(images_dir) if p.suffix.lower() in ENCODED_SUFFIXES]
    if not paths:
        raise FileNotFoundError(f"--images: no {', '.join(ENCODED_SUFFIXES)} files in {images_dir}")
    return [p.read_bytes() for p in paths], [p.name for p in paths]


def load_images(images_dir: str | None, size: int) -> tuple[torch.Tensor, list[str]]:
    """A uint8 batch from a folder, or from scikit-image's sample photos."""
    if images_dir is None:
        from skimage import data

        names = list(SAMPLE_PHOTOS)
        arrays = [getattr(data, name)() for name in names]
    else:
        from PIL import Image

        paths = _image_paths(images_dir)
        names = [p.name for p in paths]
        arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return torch.stack([square(a, size) for a in arrays]), names


def _source_photos() -> list:
    """Every colour photo that scikit-image (and scikit-learn, when installed) ship, as PIL images."""
    from PIL import Image
    from skimage import data

    arrays = [getattr(data, name)() for name in (*SAMPLE_PHOTOS, "hubble_deep_field", "immunohistochemistry")]
    try:
        from sklearn.datasets import load_sample_images

        arrays += list(load_sample_images().images)
    except ImportError:
        pass
    return [Image.fromarray(np.ascontiguousarray(a[..., :3])) for a in arrays]


def write_imagenet_like_jpegs(folder: str | pathlib.Path, count: int = 512, *, seed: int = 0, quality: int = 90,
                              classes: int = 4) -> list[pathlib.Path]:
    """``count`` JPEGs of ImageNet-like sizes (shorter side 300-500, longer 400-640), cut at random from the
    shipped photos and scaled, in ``classes`` class subfolders (``EncodedImageFolder`` layout)."""
    from PIL import Image
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    sources = _source_photos()
    folder = pathlib.Path(folder)
    paths = []
    for index in tqdm(range(count), desc="JPEGs", unit="img", disable=count < 64, leave=False):
        source = sources[index % len(sources)]
        short = int(rng.integers(300, 501))
        long = int(rng.integers(max(short, 400), 641))
        width, height = (long, short) if rng.random() < 0.5 else (short, long)
        crop_w = int(source.width * rng.uniform(0.5, 1.0))
        crop_h = min(source.height, int(crop_w * height / width))
        crop_w = int(crop_h * width / height)
        left = int(rng.integers(0, source.width - crop_w + 1))
        top = int(rng.integers(0, source.height - crop_h + 1))
        image = source.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.BICUBIC)
        path = folder / f"class{index % classes}" / f"{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=quality)
        paths.append(path)
    return paths
