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

from augserve.v1 import augserve_pb2 as pb

DTYPES = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32, "int64": np.int64}
TORCH_DTYPES = {"uint8": torch.uint8, "float16": torch.float16, "float32": torch.float32, "int64": torch.int64}
NAMES = {value: key for key, value in TORCH_DTYPES.items()}
MAX_RANK = 8


class WireError(ValueError):
    """A tensor message that does not describe a valid array."""


def to_numpy(message: pb.Tensor, field: str, allowed: tuple[str, ...] = tuple(DTYPES)) -> np.ndarray:
    """A read-only view of the message's bytes with its dtype and shape, after every check."""
    if message.dtype not in allowed:
        raise WireError(f"{field}.dtype: expected one of {', '.join(allowed)}, got {message.dtype!r}")
    shape = tuple(message.shape)
    if not 1 <= len(shape) <= MAX_RANK or any(d < 0 for d in shape):
        raise WireError(f"{field}.shape: expected 1 to {MAX_RANK} non-negative sizes, got {list(shape)}")
    dtype = np.dtype(DTYPES[message.dtype]).newbyteorder("<")
    expected = math.prod(shape) * dtype.itemsize
    if len(message.data) != expected:
        raise WireError(f"{field}.data: expected {expected} bytes for shape {list(shape)} of {message.dtype}, "
                        f"got {len(message.data)}")
    array = np.frombuffer(message.data, dtype=dtype).reshape(shape)
    return array if sys.byteorder == "little" else array.astype(array.dtype.newbyteorder("="))


def to_torch(message: pb.Tensor, field: str, allowed: tuple[str, ...] = tuple(DTYPES)) -> torch.Tensor:
    """Zero-copy torch view of a received tensor (read-only memory: never write into it)."""
    array = to_numpy(message, field, allowed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that the buffer is read-only
        return torch.from_numpy(array)


def from_torch(tensor: torch.Tensor) -> pb.Tensor:
    """One device-to-host copy at most, then the raw little-endian bytes."""
    if tensor.dtype not in NAMES:
        raise WireError(f"cannot send dtype {tensor.dtype}; expected one of {', '.join(TORCH_DTYPES)}")
    array = tensor.detach().cpu().contiguous().numpy()
    if sys.byteorder != "little":
        array = array.astype(array.dtype.newbyteorder("<"))
    return pb.Tensor(dtype=NAMES[tensor.dtype], shape=list(array.shape), data=array.tobytes())


def from_numpy(array: np.ndarray) -> pb.Tensor:
    return from_torch(torch.from_numpy(np.ascontiguousarray(array)))
