"""Arrays <-> protobuf: dtype and byte-length checks, zero-copy views on receive.

Received bytes are viewed with ``np.frombuffer`` (and ``torch.from_numpy`` on the server; no
copy; read-only, so nothing downstream may write into them: the pipeline never writes into its
input). Every malformed tensor raises ``WireError`` naming the field and the expected value.
Numpy arrays and torch tensors both go out; torch is never imported here (the client runs without it).
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any

import numpy as np

from augserve.shared_memory import RegionCache, SharedMemoryError
from augserve.spec import shown
from augserve.v1 import augserve_pb2 as pb

DTYPES = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32, "int64": np.int64}
MAX_RANK = 8


def dtype_name(dtype: Any) -> str:
    """The wire's name of a numpy or torch dtype (or of an array's): ``torch.uint8`` and ``uint8`` are ``uint8``."""
    return str(getattr(dtype, "dtype", dtype)).removeprefix("torch.")


class WireError(ValueError):
    """A tensor message that does not describe a valid array."""


def to_numpy(message: pb.Tensor, field: str, allowed: tuple[str, ...] = tuple(DTYPES),
             regions: RegionCache | None = None, data=None) -> np.ndarray:
    """A view of the message's bytes (or of its shared-memory span) with its dtype and shape, after every check.

    ``regions`` resolves ``shm`` references; without it a tensor in shared memory is refused. ``data``: the
    tensor's bytes when they travelled beside the message (``framing``), not in it.
    """
    if message.dtype not in allowed:
        raise WireError(f"{field}.dtype: expected one of {', '.join(allowed)}, got {shown(message.dtype)}")
    shape = tuple(message.shape)
    if not 1 <= len(shape) <= MAX_RANK or any(d < 0 for d in shape):
        raise WireError(f"{field}.shape: expected 1 to {MAX_RANK} non-negative sizes, got {shown(list(shape))}")
    dtype = np.dtype(DTYPES[message.dtype]).newbyteorder("<")
    expected = math.prod(shape) * dtype.itemsize
    if message.HasField("shm"):
        if regions is None:
            raise WireError(f"{field}.shm: shared memory is not accepted here; send the bytes in data")
        if data or message.data:
            raise WireError(f"{field}: expected data or shm, got both")
        try:
            buffer = regions.buffer(message.shm, expected, f"{field}.shm")
        except SharedMemoryError as error:
            raise WireError(str(error)) from None
    else:
        buffer = message.data if data is None else data  # read once: each access to a bytes field copies it
        if len(buffer) != expected:
            raise WireError(f"{field}.data: expected {expected} bytes for shape {list(shape)} of {message.dtype}, "
                            f"got {len(buffer)}")
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    return array if sys.byteorder == "little" else array.astype(array.dtype.newbyteorder("="))


def to_torch(message: pb.Tensor, field: str, allowed: tuple[str, ...] = tuple(DTYPES),
             regions: RegionCache | None = None, data=None):
    """Zero-copy torch view of a received tensor (read-only memory: never write into it)."""
    import torch

    array = to_numpy(message, field, allowed, regions, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that the buffer is read-only
        return torch.from_numpy(array)


def _host_array(value: Any) -> np.ndarray:
    """A numpy array, or a torch tensor brought to the host (one device-to-host copy at most)."""
    if dtype_name(value) not in DTYPES:
        raise WireError(f"cannot send dtype {dtype_name(value)}; expected one of {', '.join(DTYPES)}")
    array = value if isinstance(value, np.ndarray) else value.detach().cpu().contiguous().numpy()
    array = np.ascontiguousarray(array)
    return array if sys.byteorder == "little" else array.astype(array.dtype.newbyteorder("<"))


def describe(message: pb.Tensor, value: Any) -> memoryview:
    """Fill ``message``'s dtype and shape; the raw bytes, to travel beside it (``framing``), are returned."""
    array = _host_array(value)
    message.dtype = dtype_name(array)
    message.shape[:] = array.shape
    return memoryview(array.reshape(-1).view(np.uint8))


def write(message: pb.Tensor, value: Any) -> pb.Tensor:
    """Fill ``message`` in place (no sub-message copy) with a numpy array's or torch tensor's raw bytes."""
    message.data = describe(message, value).tobytes()
    return message


def describe_shared(message: pb.Tensor, value: Any, ref: pb.SharedMemoryRef) -> None:
    """Point ``message`` at an array already laid out in a shared-memory span (no bytes carried)."""
    if dtype_name(value) not in DTYPES or sys.byteorder != "little":
        raise WireError(f"cannot describe dtype {dtype_name(value)} in shared memory on this host")
    message.dtype = dtype_name(value)
    message.shape[:] = value.shape
    message.shm.CopyFrom(pb.SharedMemoryRef(name=ref.name, offset=ref.offset, size=value.nbytes))


def write_shared(message: pb.Tensor, value: Any, target: memoryview, ref: pb.SharedMemoryRef) -> None:
    """Copy an array into a shared-memory span and point ``message`` at it instead of carrying bytes."""
    array = _host_array(value)
    np.copyto(np.frombuffer(target, dtype=array.dtype).reshape(array.shape), array)
    describe_shared(message, array, ref)
