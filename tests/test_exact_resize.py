"""exact_resize: torchvision's antialiased bilinear uint8 resize, bit for bit, with a crop box per sample."""

import platform

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from augserve.ops import exact_resize

# torchvision runs torch's int16 uint8 kernel only on these CPUs (else it resizes through float32).
CAPABILITY = torch.backends.cpu.get_cpu_capability()
NATIVE_UINT8 = CAPABILITY in {"AVX2", "AVX512"} or platform.machine() in {"aarch64", "arm64"}
pytestmark = pytest.mark.skipif(not NATIVE_UINT8, reason="torchvision resizes uint8 through float32 on this CPU")


def _images(count: int, channels: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 256, (count, channels, height, width), generator=generator, dtype=torch.uint8)


def _boxes(height: int, width: int, size: tuple[int, int], count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random boxes, then the special ones: full image, 1x1, a side kept at the output's size, tiny."""
    crop_h = torch.randint(1, height + 1, (count,), generator=generator)
    crop_w = torch.randint(1, width + 1, (count,), generator=generator)
    top = (torch.rand(count, generator=generator) * (height - crop_h + 1)).long()
    left = (torch.rand(count, generator=generator) * (width - crop_w + 1)).long()
    special = [(0, 0, height, width), (height // 2, width // 3, 1, 1), (0, 0, min(3, height), min(2, width))]
    kept_h, kept_w = int(crop_h[0]), int(crop_w[0])
    special += [(0, width - kept_w, size[0], kept_w)] if size[0] <= height else []
    special += [(height - kept_h, 0, kept_h, size[1])] if size[1] <= width else []
    return torch.cat([torch.stack([top, left, crop_h, crop_w], dim=1), torch.tensor(special)])


def _torchvision(x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return torch.cat(
        [TF.resized_crop(x[i : i + 1], *box, size=list(size), antialias=True) for i, box in enumerate(boxes.tolist())]
    )


@pytest.mark.parametrize(
    ("channels", "image", "size"),
    [(3, (240, 240), (224, 224)), (1, (37, 53), (8, 8)), (3, (20, 30), (64, 48)), (1, (45, 30), (45, 12))],
)
def test_resized_crop_matches_torchvision(channels, image, size):
    generator = torch.Generator().manual_seed(sum(image) + sum(size))
    boxes = _boxes(*image, size, 6, generator)
    x = _images(len(boxes), channels, *image, generator)
    assert torch.equal(exact_resize.resized_crop(x, boxes, size), _torchvision(x, boxes, size))


@pytest.mark.parametrize(
    ("channels", "image", "size"),
    [
        (1, (37, 53), (8, 8)),
        (3, (20, 30), (64, 48)),
        (3, (50, 40), (50, 17)),
        (3, (20, 30), (20, 30)),  # unchanged: torch copies
        (1, (2, 4000), (2, 1)),  # a 4000-wide filter: precision 22, torch's cap
    ],
)
def test_resize_matches_torchvision(channels, image, size):
    x = _images(3, channels, *image, torch.Generator().manual_seed(1))
    assert torch.equal(exact_resize.resize(x, size), TF.resize(x, list(size), antialias=True))


def test_sample_does_not_depend_on_its_batch():
    generator = torch.Generator().manual_seed(2)
    boxes = _boxes(60, 80, (32, 24), 2, generator)  # 2 random and 5 special boxes: a batch of 7
    x = _images(len(boxes), 3, 60, 80, generator)
    together = exact_resize.resized_crop(x, boxes, (32, 24))
    for i in range(len(boxes)):
        assert torch.equal(exact_resize.resized_crop(x[i : i + 1], boxes[i : i + 1], (32, 24)), together[i : i + 1])


@pytest.mark.parametrize(("in_size", "out_size"), [(240, 224), (37, 8), (20, 64), (1000, 7)])
def test_coefficients_are_exact_integers_inside_the_crop(in_size, out_size):
    generator = torch.Generator().manual_seed(in_size)
    length = torch.cat([torch.randint(1, in_size + 1, (30,), generator=generator), torch.tensor([1, in_size])])
    start = (torch.rand(len(length), generator=generator) * (in_size - length + 1)).long()
    taps = exact_resize.axis_taps(start, length, in_size, out_size)
    coefficients, one = exact_resize.dense(taps, in_size), taps.one
    assert coefficients.shape == (len(length), out_size, in_size) and coefficients.dtype == torch.float64
    assert torch.equal(coefficients, coefficients.round()) and coefficients.min() >= 0
    assert coefficients.max() < 2**15 and coefficients.max() * 255 * in_size < 2**53  # float64 sums stay exact
    column = torch.arange(in_size)
    outside = (column < start[:, None]) | (column >= (start + length)[:, None])
    assert not coefficients.masked_select(outside[:, None, :]).any()
    assert torch.equal(one, one.log2().round().exp2())


@pytest.mark.parametrize(
    ("in_size", "out_size", "lengths", "precisions"),
    [(240, 224, [224, 240, 1], [14, 15, 14]), (1000, 7, [1000, 7, 70], [21, 14, 18]), (4000, 1, [4000], [22])],
)
def test_precision_is_per_sample(in_size, out_size, lengths, precisions):
    """torch's precision follows the largest weight: 14 for an identity, more for wide filters, at most 22."""
    length = torch.tensor(lengths)
    one = exact_resize.axis_taps(torch.zeros_like(length), length, in_size, out_size).one
    assert one.log2().tolist() == precisions
