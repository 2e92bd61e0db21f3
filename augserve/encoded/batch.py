"""A batch of encoded images (JPEG, PNG, WebP) of any sizes: headers read and limits checked before decoding.

JPEG and WebP decode with libjpeg-turbo and libwebp through ``torchvision.io`` on the CPU, and JPEGs
with nvJPEG (one batched call) on CUDA. PNG decodes with Pillow: torchvision's libpng wrapper kills
the whole process on a corrupt PNG (libpng's error jump), which no server can allow. (torchvision
0.29 marks its decoders deprecated in favour of TorchCodec, which needs a system FFmpeg; the pinned
torchvision keeps them.) Every image decodes to 3-channel RGB uint8: grayscale is
replicated, CMYK converted, alpha dropped, 16-bit PNG scaled to 8 bits, and a JPEG's EXIF
orientation applied, so what comes out has the size its header promised (checked).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg, decode_webp

from augserve.encoded.headers import Header, HeaderError, read_header
from augserve.encoded.window import DecodedWindow
from augserve.side_streams import run_beside

CHANNELS = 3
DEFAULT_MAX_PIXELS = 89_478_485  # per image, as Pillow's decompression-bomb limit; servers set --max-pixels


class DecodeError(ValueError):
    """An image whose bytes could not be decoded; the message names its index in the batch."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class EncodedImage:
    data: memoryview  # the file's bytes, read-only
    header: Header
    window: DecodedWindow | None = None  # where its decoded pixels are kept for other readers of the same file
    key: Hashable = None  # its identity there


def is_encoded_image(image: Any) -> bool:
    """Whether ``image`` is what a batch of encoded images holds: file bytes, not pixels."""
    if isinstance(image, (bytes, bytearray, memoryview, EncodedImage)):
        return True
    return isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim == 1 and image.dtype in (np.uint8, torch.uint8)


def _as_buffer(image: Any, where: str) -> memoryview:
    if isinstance(image, torch.Tensor):
        image = image.cpu().numpy()  # file bytes: a device tensor comes back to the host first
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 1:
            raise ValueError(f"{where}: expected a 1-D uint8 array of file bytes, got {image.dtype} "
                             f"of shape {image.shape}")
        image = np.ascontiguousarray(image)
    if not isinstance(image, (bytes, bytearray, memoryview, np.ndarray)):
        raise ValueError(f"{where}: expected the bytes of an encoded image (bytes, memoryview or a uint8 "
                         f"array), got {type(image).__name__}")
    view = memoryview(image).cast("B") if isinstance(image, memoryview) else memoryview(image)
    if view.nbytes == 0:
        raise ValueError(f"{where}: expected the bytes of an encoded image, got 0 bytes")
    return view.toreadonly()


class EncodedBatch:
    """Encoded images of any sizes, each header read and checked: what a pipeline takes instead of a dense x.

    ``max_pixels`` refuses any image whose header declares more than that many pixels, before
    anything is decoded or allocated. ``field`` names the images in error messages. With a ``window``,
    image i's pixels are decoded once for every batch that reads the file named ``keys[i]`` while the
    window keeps them.
    """

    def __init__(self, images: Iterable[Any], *, max_pixels: int = DEFAULT_MAX_PIXELS, field: str = "encoded",
                 device: torch.device | str = "cpu", window: DecodedWindow | None = None,
                 keys: Sequence[Hashable] = ()):
        self.device = torch.device(device)
        self.field = field
        self.images: list[EncodedImage] = []
        for index, image in enumerate(images):
            if isinstance(image, EncodedImage):
                self.images.append(image)
                continue
            where = f"{field}[{index}]"
            buffer = _as_buffer(image, where)
            try:
                header = read_header(buffer)
            except HeaderError as error:
                raise ValueError(f"{where}: {error}") from None
            pixels = header.height * header.width
            if pixels > max_pixels:
                raise ValueError(f"{where}: the {header.format} header declares {header.height}x{header.width} = "
                                 f"{pixels} pixels, more than the limit of {max_pixels} per image "
                                 "(--max-pixels); refused before decoding")
            self.images.append(EncodedImage(buffer, header, window, keys[index] if window is not None else None))
        if not self.images:
            raise ValueError(f"{field}: expected at least one image, got none")

    @classmethod
    def concat(cls, batches: Sequence["EncodedBatch"]) -> "EncodedBatch":
        return cls([image for batch in batches for image in batch.images], field=batches[0].field,
                   device=batches[0].device)

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "EncodedBatch":
        """The same images, to be decoded on ``device`` (decoding is the host-to-device step)."""
        return EncodedBatch(self.images, field=self.field, device=device)

    @property
    def sizes(self) -> torch.Tensor:
        """(B, 2) int64 displayed heights and widths, from the headers."""
        return torch.tensor([(i.header.height, i.header.width) for i in self.images], dtype=torch.int64)

    def decode(self, index: int) -> torch.Tensor:
        """Image ``index`` as (3, H, W) uint8 on the CPU (shared with other readers of its window: read only)."""
        image = self.images[index]
        if image.window is not None:
            return image.window.pixels(image.key, lambda: self._decode(index))
        return self._decode(index)

    def _decode(self, index: int) -> torch.Tensor:
        image = self.images[index]
        try:
            pixels = _DECODERS[image.header.format](image.data)
        except (RuntimeError, OSError, ValueError, SyntaxError) as error:  # what the decoders raise for bad data
            raise DecodeError(f"{self.field}[{index}]: corrupt {image.header.format}: {_first_line(error)}",
                              index) from None
        return self._checked(index, pixels)

    def decode_jpegs_on_device(self) -> dict[int, torch.Tensor]:
        """The batch's JPEGs that nvJPEG can take, decoded on the CUDA device in one call, by index.

        Left to the CPU decoder (``decode``): files with an EXIF orientation (torchvision's CUDA decode
        ignores it), and any file nvJPEG refuses (a valid CMYK JPEG as much as a corrupt one, which
        the CPU decoder then names).
        """
        indices = [i for i, image in enumerate(self.images) if image.header.format == "jpeg"
                   and image.header.orientation == 1]
        if not indices:
            return {}
        try:
            decoded = self._on_device(indices)
        except RuntimeError:  # one file spoils the call: each alone, and what still fails goes to the CPU
            decoded = {}
            for i in indices:
                try:
                    decoded.update(self._on_device([i]))
                except RuntimeError:
                    continue
        return {i: self._checked(i, pixels) for i, pixels in decoded.items()}

    def _on_device(self, indices: list[int]) -> dict[int, torch.Tensor]:
        """nvJPEG on its own stream (``side_streams``: it would overwrite memory the caller's stream still reads)."""
        files = [_as_tensor(self.images[i].data) for i in indices]
        decoded = run_beside(self.device, "decode",
                             lambda: decode_jpeg(files, mode=ImageReadMode.RGB, device=self.device))
        return dict(zip(indices, decoded))

    def _checked(self, index: int, pixels: torch.Tensor) -> torch.Tensor:
        header = self.images[index].header
        if tuple(pixels.shape) != (CHANNELS, header.height, header.width):
            raise DecodeError(f"{self.field}[{index}]: decoded to {list(pixels.shape)}, but its {header.format} "
                              f"header declares {header.height}x{header.width}", index)
        return pixels


def _as_tensor(data: memoryview) -> torch.Tensor:
    """A tensor over a copy of the file: torch warns on read-only buffers, and a file is ~1% of its pixels."""
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip() and "/csrc/" not in line]
    return lines[-1] if lines else type(error).__name__


def _decode_png(data: memoryview) -> torch.Tensor:
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        if image.mode.startswith("I"):  # 16-bit grayscale: the top 8 bits, as Pillow keeps of 16-bit colour
            grey = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
            array = np.repeat(grey[..., None], CHANNELS, axis=-1)
        else:
            array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.transpose(2, 0, 1).copy())  # CHW, and writable (Pillow's arrays are not)


_DECODERS = {
    "jpeg": lambda data: decode_jpeg(_as_tensor(data), mode=ImageReadMode.RGB, apply_exif_orientation=True),
    "png": _decode_png,
    "webp": lambda data: decode_webp(_as_tensor(data), mode=ImageReadMode.RGB),
}
