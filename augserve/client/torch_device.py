"""Batches as torch tensors on a device: the copy crosses the bus in the wire's dtype (uint8 for
images), and a normalize the server left to the client runs on the device after it."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from augserve.client.codec import Batch
from augserve.client.frameworks import require
from augserve.normalize import normalize


def as_tensor(value):
    """A numpy array (read-only views of received bytes are copied) or tensor as a writable torch tensor."""
    torch = require("torch", "torch tensors")
    if not isinstance(value, np.ndarray):
        return value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only arrays are copied below before any write
        return torch.from_numpy(value if value.flags.writeable else value.copy())


def batch_to(batch: Batch, device, non_blocking: bool = False) -> Batch:
    torch = require("torch", "Batch.to")
    device = torch.device(device)

    def move(value):
        if value is None:
            return None
        value = as_tensor(value)
        if value.device == device:
            return value
        if device.type == "cuda" and value.device.type == "cpu" and not value.is_pinned():
            value = value.pin_memory()
        return value.to(device, non_blocking=non_blocking)

    x = move(batch.x)
    if batch.normalize is not None:
        x = normalize(x, *batch.normalize, batch.out_dtype)
    indices = None if batch.indices is None else as_tensor(batch.indices)
    return dataclasses.replace(batch, x=x, labels=move(batch.labels), indices=indices, normalize=None)
