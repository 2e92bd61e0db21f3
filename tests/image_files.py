"""Encoded image files of every kind the service accepts, made from scikit-image's photos with Pillow."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image
from skimage import data


def _photo(name: str, height: int, width: int) -> Image.Image:
    array = getattr(data, name)()
    image = Image.fromarray(array if array.ndim == 3 else np.stack([array] * 3, axis=-1))
    return image.convert("RGB").resize((width, height), Image.BICUBIC)


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _exif_rotated(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(image, "JPEG", quality=90, exif=exif.tobytes())


def png16(rgb16: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one): IHDR, one zlib IDAT of unfiltered rows, IEND."""
    height, width, _ = rgb16.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def image_kinds() -> dict[str, bytes]:
    """One file per kind, of at least five different sizes (height x width as displayed)."""
    rng = np.random.default_rng(0)
    wide = _photo("coffee", 210, 320)
    return {
        "jpeg baseline": _save(_photo("astronaut", 300, 420), "JPEG", quality=90),
        "jpeg progressive": _save(_photo("coffee", 333, 500), "JPEG", quality=90, progressive=True),
        "jpeg grayscale": _save(_photo("camera", 256, 310).convert("L"), "JPEG", quality=90),
        "jpeg cmyk": _save(_photo("chelsea", 240, 361).convert("CMYK"), "JPEG", quality=95),
        "jpeg exif rotated": _exif_rotated(_photo("rocket", 200, 360), 6),  # displayed 360 x 200
        "png rgb": _save(_photo("astronaut", 190, 250), "PNG"),
        "png 16-bit": png16(rng.integers(0, 65536, size=(120, 170, 3), dtype=np.uint16)),
        "png palette": _save(wide.quantize(64), "PNG"),
        "png alpha": _save(Image.merge("RGBA", (*wide.split(), wide.convert("L"))), "PNG"),
        "png grayscale": _save(wide.convert("L"), "PNG"),
        "webp lossy": _save(_photo("chelsea", 280, 230), "WEBP", quality=85),
        "webp lossless": _save(_photo("rocket", 150, 260), "WEBP", lossless=True),
    }


def pillow_rgb(file: bytes) -> np.ndarray:
    """What Pillow makes of a file as displayed: EXIF orientation applied, RGB, 8 bits (16-bit PNGs: top byte)."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(Image.open(io.BytesIO(file)))
    if image.mode == "RGBA" or image.mode == "P":
        image = image.convert("RGB")
    return np.asarray(image.convert("RGB"))


def with_size(file: bytes, height: int, width: int) -> bytes:
    """A JPEG whose frame header declares another size (a decompression bomb when large)."""
    sof = next(i for i in range(2, len(file) - 9) if file[i] == 0xFF and file[i + 1] in (0xC0, 0xC2))
    return file[:sof + 5] + struct.pack(">HH", height, width) + file[sof + 9:]
