"""Tensor <-> protobuf: dtype and byte-length checks, zero-copy views on receive.

Received bytes are viewed with ``np.frombuffer`` and ``torch.from_numpy`` (no
copy; read-only, so nothing downstream may write into them: the pipeline never
writes into its input). Every malformed tensor raises ``WireError`` naming the
field and the expected value.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import torch

from augserve.shared_memory import RegionCache, SharedMemoryError
from augserve.v1 import augserve_pb2 as pb

DTYPES = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32, "int64": np.int64}
TORCH_DTYPES = {"uint8": torch.uint8, "float16": torch.float16, "float32": torch.float32, "int64": torch.int64}
NAMES = {value: key for key, value in TORCH_DTYPES.items()}
MAX_RANK = 8


class WireError(ValueError):
    """A tensor message that does not describe a valid array."""


def to_numpy(message: pb.Tensor, field: str, allowed: tuple[str, ...] = tuple(DTYPES),
             regions: RegionCache | None = None, data: memoryview | None = None) -> np.ndarray:
    """A view of the message's bytes (or of its shared-memory span) with its dtype and shape, after every check.

    ``regions`` resolves ``shm`` references; without it a tensor in shared memory is refused.
    ``data``: the bytes of the ``data`` field when the parser left them outside the message (``parse``).
    """
    if message.dtype not in allowed:
        raise WireError(f"{field}.dtype: expected one of {', '.join(allowed)}, got {message.dtype!r}")
    shape = tuple(message.shape)
    if not 1 <= len(shape) <= MAX_RANK or any(d < 0 for d in shape):
        raise WireError(f"{field}.shape: expected 1 to {MAX_RANK} non-negative sizes, got {list(shape)}")
    dtype = np.dtype(DTYPES[message.dtype]).newbyteorder("<")
    expected = math.prod(shape) * dtype.itemsize
    buffer = message.data if data is None else data  # read once: each access to a bytes field copies it
    if message.HasField("shm"):
        if regions is None:
            raise WireError(f"{field}.shm: shared memory is not accepted here; send the bytes in data")
        if len(buffer):
            raise WireError(f"{field}: expected data or shm, got both")
        try:
            buffer = regions.view(message.shm, expected, f"{field}.shm")
        except SharedMemoryError as error:
            raise WireError(str(error)) from None
    else:
        if len(buffer) != expected:
            raise WireError(f"{field}.data: expected {expected} bytes for shape {list(shape)} of {message.dtype}, "
                            f"got {len(buffer)}")
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    return array if sys.byteorder == "little" else array.astype(array.dtype.newbyteorder("="))


def to_torch(message: pb.Tensor, field: str, allowed: tuple[str, ...] = tuple(DTYPES),
             regions: RegionCache | None = None, data: memoryview | None = None) -> torch.Tensor:
    """Zero-copy torch view of a received tensor (read-only memory: never write into it)."""
    array = to_numpy(message, field, allowed, regions, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that the buffer is read-only
        return torch.from_numpy(array)


def _host_array(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype not in NAMES:
        raise WireError(f"cannot send dtype {tensor.dtype}; expected one of {', '.join(TORCH_DTYPES)}")
    array = tensor.detach().cpu().contiguous().numpy()
    return array if sys.byteorder == "little" else array.astype(array.dtype.newbyteorder("<"))


def write(message: pb.Tensor, tensor: torch.Tensor) -> pb.Tensor:
    """Fill ``message`` in place (no sub-message copy): one device-to-host copy at most, then the raw bytes."""
    message.data = describe(message, tensor).tobytes()
    return message


def describe(message: pb.Tensor, tensor: torch.Tensor) -> np.ndarray:
    """Fill ``message``'s dtype and shape; the host array whose bytes belong in its ``data`` (see ``frame``)."""
    array = _host_array(tensor)
    message.dtype = NAMES[tensor.dtype]
    message.shape[:] = array.shape
    return array


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(raw: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise IndexError("varint longer than 10 bytes")


def _fields(raw: memoryview, start: int, stop: int):
    """(number, wire type, field start, payload start, field end) of each field in ``raw[start:stop]``."""
    position = start
    while position < stop:
        tag, payload = _read_varint(raw, position)
        kind = tag & 7
        if kind == 0:
            end = _read_varint(raw, payload)[1]
        elif kind == 1:
            end = payload + 8
        elif kind == 2:
            length, payload = _read_varint(raw, payload)
            end = payload + length
        elif kind == 5:
            end = payload + 4
        else:
            raise IndexError(f"wire type {kind} is not used by augserve messages")
        if end > stop:
            raise IndexError("field runs past its message")
        yield tag >> 3, kind, position, payload, end
        position = end


def parse(message_type, raw: bytes, path: tuple[int, int]):
    """``message_type`` parsed from ``raw``, with the bytes field at ``path`` left out and returned as a view.

    The protobuf parser would copy the megabytes into the message, and reading the field would copy
    them again; here only the small fields are parsed. Anything unusual (a repeated tensor field,
    unknown wire types, malformed lengths) is parsed the standard way instead, with the same result
    and the same errors as before.
    """
    outer, inner = path
    view = memoryview(raw)
    try:
        found = []
        for number, kind, start, payload, end in _fields(view, 0, len(view)):
            if number == outer and kind == 2:
                for n, k, field_start, data_start, field_end in _fields(view, payload, end):
                    if n == inner and k == 2:
                        found.append((start, payload, end, field_start, data_start, field_end))
        if len(found) != 1:
            return message_type.FromString(raw), None
        start, payload, end, field_start, data_start, field_end = found[0]
        rest = bytes(view[payload:field_start]) + bytes(view[field_end:end])
        stripped = b"".join((view[:start], _varint(outer << 3 | 2), _varint(len(rest)), rest, view[end:]))
        return message_type.FromString(stripped), view[data_start:field_end]
    except IndexError:
        return message_type.FromString(raw), None


def frame(message, payloads: dict[tuple[int, ...], np.ndarray]) -> bytes:
    """``message`` serialized, each payload appended as the bytes field at its path of field numbers.

    Protobuf merges repeated occurrences of an embedded message, so every parser reads the same
    message as if the bytes had been set in place; but the megabytes are copied once, into the
    result, instead of into the message, through the serializer's growing buffer and out again.
    """
    parts: list = [message.SerializeToString()]
    for path, array in payloads.items():
        data = memoryview(np.ascontiguousarray(array)).cast("B")
        headers, length = [], data.nbytes
        for number in reversed(path):
            header = _varint(number << 3 | 2) + _varint(length)  # wire type 2: length-delimited
            headers.insert(0, header)
            length += len(header)
        parts += headers
        parts.append(data)
    return b"".join(parts)


def describe_shared(message: pb.Tensor, tensor: torch.Tensor, ref: pb.SharedMemoryRef) -> None:
    """Point ``message`` at a tensor already laid out in a shared-memory span (no bytes carried)."""
    if tensor.dtype not in NAMES or sys.byteorder != "little":
        raise WireError(f"cannot describe dtype {tensor.dtype} in shared memory on this host")
    message.dtype = NAMES[tensor.dtype]
    message.shape[:] = tensor.shape
    message.shm.CopyFrom(pb.SharedMemoryRef(name=ref.name, offset=ref.offset, size=tensor.nbytes))


def write_shared(message: pb.Tensor, tensor: torch.Tensor, target: memoryview, ref: pb.SharedMemoryRef) -> None:
    """Copy ``tensor`` into a shared-memory span and point ``message`` at it instead of carrying bytes."""
    array = _host_array(tensor)
    np.copyto(np.frombuffer(target, dtype=array.dtype).reshape(array.shape), array)
    describe_shared(message, tensor, ref)
