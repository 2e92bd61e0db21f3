"""Batches on JAX devices: ``device_put`` (sharded when given a sharding) a few batches ahead of the loop."""

from __future__ import annotations

import collections
from typing import Iterable, Iterator

from augserve.client.batch import Batch
from augserve.extras import require


def device_put_batches(batches: Iterable[Batch], *, sharding=None, device=None, prefetch: int = 2,
                       normalize: bool = True) -> Iterator[tuple]:
    """``(x, labels)`` as JAX arrays placed by ``jax.device_put`` on ``sharding`` (or ``device``, or
    JAX's default), ``prefetch`` batches ahead: their copies run while the loop computes.

    A normalize the server left to the client (``defer_normalize=True``) runs on the device after
    the copy when ``normalize`` is true (uint8 crosses the bus, float32 comes out).
    """
    jax = require("jax", "device_put_batches")
    import jax.numpy as jnp

    if prefetch < 1:
        raise ValueError(f"prefetch: expected at least 1, got {prefetch}")
    place = sharding if sharding is not None else device

    def put(batch: Batch) -> tuple:
        x = jax.device_put(batch.x, place)
        if normalize and batch.normalize is not None:
            mean, std = (jnp.asarray(v, jnp.float32) for v in batch.normalize)
            unit = 1.0 if jnp.issubdtype(x.dtype, jnp.floating) else 1.0 / 255.0
            shape = (1, -1) + (1,) * (x.ndim - 2)
            x = x.astype(jnp.float32) * (unit / std).reshape(shape) - (mean / std).reshape(shape)
            if batch.out_dtype:
                x = x.astype(batch.out_dtype)
        labels = None if batch.labels is None else jax.device_put(batch.labels, place)
        return x, labels

    ahead: collections.deque = collections.deque()
    for batch in batches:
        ahead.append(put(batch))  # device_put is asynchronous: the copy proceeds while earlier batches are used
        if len(ahead) > prefetch:
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()
