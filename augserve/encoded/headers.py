"""An encoded image's format and displayed size, read from its header without decoding it.

The size must be known before any pixel is decoded: the crop box of a sample is drawn from it
(so the draw replays whatever batch the image comes in), and the pixel limit refuses a
decompression bomb (a 40000x40000 header on a few KB) before it can allocate anything. Every
read is bounds-checked; bytes that do not parse raise ``HeaderError`` saying what is wrong.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

FORMATS = ("jpeg", "png", "webp")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT, JPG, DAC)
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI: no length field
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_MARKER = re.compile(rb"\xff")  # re searches any buffer in place, without copying it
_END_OF_IMAGE = re.compile(rb"\xff\xd9")
MAX_MARKERS = 4096  # segments read before the frame header; real files have a few dozen


class HeaderError(ValueError):
    """Bytes that are not a complete image of a supported format."""


class Header(NamedTuple):
    format: str  # one of FORMATS
    height: int  # as displayed: after the EXIF orientation a JPEG asks for
    width: int
    orientation: int = 1  # a JPEG's EXIF orientation (1: as stored); decoders that ignore it must not take the file


def read_header(data: bytes | memoryview) -> Header:
    """The format and displayed size of an encoded image; HeaderError for anything else."""
    view = memoryview(data).cast("B")
    if view[:2] == b"\xff\xd8":
        return _jpeg(view)
    if view[:8] == _PNG_SIGNATURE:
        return _png(view)
    if view[:4] == b"RIFF" and view[8:12] == b"WEBP":
        return _webp(view)
    start = bytes(view[:8]).hex(" ") or "nothing"
    raise HeaderError(f"not a JPEG, PNG or WebP image (starts with {start})")


def _unpack(fmt: str, view: memoryview, offset: int, what: str) -> tuple:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(view):
        raise HeaderError(f"truncated: {what} lies past the end of the {len(view)} bytes")
    return struct.unpack_from(fmt, view, offset)


def _checked(header: Header) -> Header:
    if header.height <= 0 or header.width <= 0:
        raise HeaderError(f"{header.format} header declares an empty image ({header.height}x{header.width})")
    return header


def _jpeg(view: memoryview) -> Header:
    position, size, orientation = 2, None, 1
    for _ in range(MAX_MARKERS):
        found = _MARKER.search(view, position)
        if found is None:
            break
        position = found.end()
        while position < len(view) and view[position] == 0xFF:  # fill bytes
            position += 1
        if position >= len(view):
            break
        marker = view[position]
        position += 1
        if marker in _JPEG_STANDALONE or marker == 0x00:
            continue
        (length,) = _unpack(">H", view, position, f"segment 0x{marker:02X}")
        if length < 2:
            raise HeaderError(f"corrupt JPEG: segment 0x{marker:02X} declares length {length}")
        body = position + 2
        if marker in _JPEG_SOF:
            precision, height, width, _ = _unpack(">BHHB", view, body, "the frame header")
            if precision != 8:
                raise HeaderError(f"{precision}-bit JPEG samples are not supported (8-bit only)")
            if height == 0:
                raise HeaderError("JPEG height defined after the first scan (DNL) is not supported")
            size = (height, width)
        elif marker == 0xE1 and bytes(view[body:body + 6]) == b"Exif\x00\x00":
            orientation = _exif_orientation(view[body + 6:min(len(view), position + length)])
        elif marker == 0xDA:  # start of scan: the header is over
            if size is None:
                raise HeaderError("corrupt JPEG: scan data before any frame header")
            if _END_OF_IMAGE.search(view, body) is None:  # entropy-coded data never holds FF D9
                raise HeaderError("truncated JPEG: no end-of-image marker after the scan data")
            height, width = size
            if orientation in _TRANSPOSING:
                height, width = width, height
            return _checked(Header("jpeg", height, width, orientation))
        position += length
    raise HeaderError("truncated JPEG: the bytes end before the first scan")


def _exif_orientation(tiff: memoryview) -> int:
    """The orientation tag of an EXIF block's first IFD (1 when absent or unreadable, as decoders do)."""
    order = {b"II": "<", b"MM": ">"}.get(bytes(tiff[:2]))
    if order is None or len(tiff) < 8:
        return 1
    try:
        (ifd,) = _unpack(order + "I", tiff, 4, "EXIF")
        (count,) = _unpack(order + "H", tiff, ifd, "EXIF")
        for entry in range(min(count, 512)):
            tag, kind, _, value = _unpack(order + "HHIH", tiff, ifd + 2 + 12 * entry, "EXIF")
            if tag == _EXIF_ORIENTATION and kind == 3:
                return value if 1 <= value <= 8 else 1
    except HeaderError:
        return 1
    return 1


def _png(view: memoryview) -> Header:
    length, kind, width, height = _unpack(">I4sII", view, 8, "the IHDR chunk")
    if kind != b"IHDR" or length != 13:
        raise HeaderError(f"corrupt PNG: first chunk is {kind!r} of {length} bytes, expected IHDR of 13")
    if bytes(view[-12:]).find(b"IEND") < 0:
        raise HeaderError("truncated PNG: no IEND chunk at the end")
    return _checked(Header("png", height, width))


def _webp(view: memoryview) -> Header:
    (riff_size,) = _unpack("<I", view, 4, "the RIFF size")
    if riff_size + 8 > len(view):
        raise HeaderError(f"truncated WebP: the RIFF header declares {riff_size + 8} bytes, got {len(view)}")
    (chunk,) = _unpack("4s", view, 12, "the first chunk")
    if chunk == b"VP8 ":
        start, width, height = _unpack("<3sHH", view, 23, "the VP8 frame header")
        if start != b"\x9d\x01\x2a":
            raise HeaderError("corrupt WebP: bad VP8 start code")
        return _checked(Header("webp", height & 0x3FFF, width & 0x3FFF))
    if chunk == b"VP8L":
        signature, bits = _unpack("<BI", view, 20, "the VP8L header")
        if signature != 0x2F:
            raise HeaderError("corrupt WebP: bad VP8L signature")
        return _checked(Header("webp", ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1))
    if chunk == b"VP8X":
        width = int.from_bytes(_unpack("3s", view, 24, "the VP8X canvas size")[0], "little") + 1
        height = int.from_bytes(_unpack("3s", view, 27, "the VP8X canvas size")[0], "little") + 1
        return _checked(Header("webp", height, width))
    raise HeaderError(f"corrupt WebP: unknown first chunk {bytes(chunk)!r}")
