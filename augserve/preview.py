"""Preview grids: each original beside several augmented versions, captioned with the ops drawn."""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from augserve.pipeline import Pipeline
from augserve.steps import Normalize

SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MAX_IMAGES = 8


def _square(image: np.ndarray, size: int) -> torch.Tensor:
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
    return torch.stack([_square(a, size) for a in arrays]), names


def _captions(params: list[dict], count: int) -> list[str]:
    """Short per-sample text: the policy ops, random steps and mixing each sample drew."""
    lines = [[] for _ in range(count)]
    for step in params:
        if "space" in step:
            space = step["space"]
            for i, row in enumerate(step["ops"].tolist()):
                lines[i].append("+".join(space[k] for k in row if k >= 0) or "none")
        elif "lam" in step:
            for i, (mixed, cut, lam) in enumerate(zip(step["mixed"].tolist(), step["cutmix"].tolist(),
                                                      step["lam"].tolist())):
                if mixed:
                    lines[i].append(f"{'cutmix' if cut else 'mixup'} {lam:.2f}")
        elif "applied" in step:
            for i, hit in enumerate(step["applied"].tolist()):
                if hit:
                    lines[i].append(step["op"])
    return [", ".join(parts) for parts in lines]


def write_preview(spec, out: str, *, images_dir: str | None = None, versions: int = 5, size: int = 256,
                  seed: int = 0) -> pathlib.Path:
    """Run ``spec`` on every image ``versions`` times (distinct keys) and save a PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not 1 <= versions <= 16:
        raise ValueError(f"--versions: expected 1..16, got {versions}")
    pipe = Pipeline.from_spec(pathlib.Path(spec[1:]) if isinstance(spec, str) and spec.startswith("@") else spec)
    # Normalization only rescales values; drop it so the grid shows viewable pixels.
    shown = Pipeline([s for s in pipe.steps if not isinstance(s, Normalize)])
    images, names = load_images(images_dir, size)
    batch = images.repeat_interleave(versions, dim=0)
    result = shown(batch, seed=seed, keys=torch.arange(batch.shape[0]), out_dtype="uint8")
    captions = _captions(result.params, batch.shape[0])

    rows, cols = len(names), versions + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for r, name in enumerate(names):
        axes[r][0].imshow(images[r].permute(1, 2, 0).numpy())
        axes[r][0].set_title(f"original: {name}", fontsize=7)
        for v in range(versions):
            i = r * versions + v
            axes[r][v + 1].imshow(result.x[i].permute(1, 2, 0).numpy())
            axes[r][v + 1].set_title(captions[i], fontsize=6, wrap=True)
    for ax in axes.flat:
        ax.axis("off")
    title = spec if isinstance(spec, str) else "custom pipeline"
    fig.suptitle(f"{title}  (seed {seed}; normalize steps not shown)", fontsize=9)
    fig.tight_layout()
    path = pathlib.Path(out)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
