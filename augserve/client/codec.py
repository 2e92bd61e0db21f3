"""Requests from torch/numpy, batches from responses: where the client turns tensors into messages and back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from augserve import wire
from augserve.shared_memory import Slot
from augserve.spec import is_spec_text
from augserve.v1 import augserve_pb2 as pb

Array = torch.Tensor | np.ndarray


@dataclass
class Batch:
    """An augmented batch. Unpacks as ``x, labels = batch`` for training loops.

    ``label_smoothing`` is the epsilon the server already applied to ``labels`` (0: none), so a
    loss does not smooth twice. ``indices`` are the dataset indices of a served dataset's samples.
    """

    x: Array
    labels: Array | None = None
    label_smoothing: float = 0.0
    server_seconds: float = 0.0
    params: list[dict[str, Any]] | None = None
    indices: torch.Tensor | None = None
    skipped: list[tuple[int, str]] | None = None  # a served dataset's samples left out of this batch, with why
    batch_index: int = 0
    num_batches: int = 0
    request_id: int = 0

    def __iter__(self) -> Iterator[Array | None]:
        return iter((self.x, self.labels))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """This batch with ``x`` and ``labels`` on ``device`` (pinned first when copying to CUDA)."""
        device = torch.device(device)

        def move(value):
            if not isinstance(value, torch.Tensor) or value.device == device:
                return value
            if device.type == "cuda" and value.device.type == "cpu" and not value.is_pinned():
                value = value.pin_memory()
            return value.to(device, non_blocking=non_blocking)

        return Batch(move(self.x), move(self.labels), self.label_smoothing, self.server_seconds, self.params,
                     self.indices, self.skipped, self.batch_index, self.num_batches, self.request_id)


def split_item(item) -> tuple[Array, Array | None, Any]:
    """A ``map`` item: ``x``, ``(x, labels)`` or ``(x, labels, keys)``; ``x`` may be a list of encoded images."""
    if isinstance(item, (tuple, list)) and not is_encoded(item):
        if not 1 <= len(item) <= 3:
            raise ValueError(f"map: expected x, (x, labels) or (x, labels, keys), got a {len(item)}-tuple")
        return tuple(item) + (None,) * (3 - len(item))
    return item, None, None


def pipeline_ref(pipeline: str | dict | list) -> pb.PipelineRef:
    """A preset / timm name, or an inline spec (dict, list, JSON or YAML text)."""
    if isinstance(pipeline, (dict, list)):
        return pb.PipelineRef(spec=json.dumps(pipeline))
    if not isinstance(pipeline, str) or not pipeline.strip():
        raise ValueError(f"pipeline: expected a preset name, a spec or its text, got {pipeline!r}")
    if is_spec_text(pipeline):
        return pb.PipelineRef(spec=pipeline)
    return pb.PipelineRef(name=pipeline)


def _as_torch(value: Array, field: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        return value
    raise TypeError(f"{field}: expected a torch tensor or numpy array, got {type(value).__name__}")


def is_encoded(x: Any) -> bool:
    """A list of encoded image files (bytes, memoryviews, 1-D uint8 arrays) rather than a dense batch."""
    return isinstance(x, (list, tuple)) and bool(x) and all(map(_is_file, x))


def _is_file(item: Any) -> bool:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return True
    return isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 1 and item.dtype in (np.uint8, torch.uint8)


def wants_numpy(x: Any) -> bool:
    """Numpy in, numpy out: a numpy batch, or encoded images given as numpy arrays."""
    return isinstance(x, np.ndarray) or is_encoded(x) and isinstance(x[0], np.ndarray)


def _file_bytes(item: Any) -> memoryview:
    if isinstance(item, torch.Tensor):
        item = item.cpu().numpy()
    return memoryview(np.ascontiguousarray(item) if isinstance(item, np.ndarray) else item).cast("B")


def _write_encoded(message: pb.EncodedImages, files: list, slot: Slot | None) -> int:
    """Encoded images into the request (inline, or back to back in the slot's input region); their total bytes."""
    views = [_file_bytes(item) for item in files]
    total = sum(view.nbytes for view in views)
    if slot is None:
        message.images.extend(bytes(view) for view in views)
        return total
    region = slot.region("x", total)
    offset = 0
    for view in views:
        region.buf[offset:offset + view.nbytes] = view
        offset += view.nbytes
    message.sizes.extend(view.nbytes for view in views)
    message.shm.CopyFrom(pb.SharedMemoryRef(name=region.name, size=region.size))
    return total


def augment_request(x: Array | list, labels: Array | None, *, pipeline, seed: int, keys=None, num_classes=None,
                    out_dtype=None, return_params=False, request_id=0, slot: Slot | None = None) -> pb.AugmentRequest:
    """The request; with a shared-memory ``slot``, x travels in its input region and the answer comes back
    in its output region (sized to the last answer, or to x at first).

    ``x`` is a dense batch or a list of encoded image files (JPEG, PNG, WebP bytes) of any sizes.
    """
    message = pb.AugmentRequest(seed=int(seed), num_classes=int(num_classes or 0), out_dtype=out_dtype or "",
                                return_params=return_params, request_id=request_id)
    message.pipeline.CopyFrom(pipeline_ref(pipeline))
    if is_encoded(x):
        sent = _write_encoded(message.encoded, x, slot)
    else:
        x = _as_torch(x, "x")
        sent = x.nbytes
        if slot is None:
            wire.write(message.x, x)
        else:
            region = slot.region("x", x.nbytes)
            wire.write_shared(message.x, x, region.buf[:x.nbytes],
                              pb.SharedMemoryRef(name=region.name, size=region.size))
    if slot is not None:
        output = slot.region("out", max(slot.output_bytes, sent))
        message.output_shm.CopyFrom(pb.SharedMemoryRef(name=output.name, size=output.size))
    if keys is not None:
        message.keys.extend(np.asarray(keys, dtype=np.int64).reshape(-1).tolist())
    if labels is not None:
        wire.write(message.labels, _as_torch(labels, "labels"))
    return message


def dataset_request(dataset: str, pipeline, batch_size: int, *, epoch: int, seed: int, shard_index: int,
                    num_shards: int, start_batch: int, out_dtype: str | None,
                    return_params: bool) -> pb.StreamDatasetRequest:
    request = pb.StreamDatasetRequest(dataset=dataset, batch_size=batch_size, epoch=epoch, seed=seed,
                                      shard_index=shard_index, num_shards=num_shards, start_batch=start_batch,
                                      out_dtype=out_dtype or "", return_params=return_params)
    request.pipeline.CopyFrom(pipeline_ref(pipeline))
    return request


def _decode(message: pb.Tensor, as_numpy: bool, slot: Slot | None = None) -> Array:
    """Inline bytes: numpy gets a read-only zero-copy view, torch one (writable) copy. Shared memory:
    a writable view of the slot's output region, lent until the result is dropped."""
    if message.HasField("shm"):
        array = slot.lend(wire.to_numpy(message, "response", regions=slot))  # the slot checks the region is its own
        return array if as_numpy else torch.from_numpy(array)
    if slot is not None:
        slot.output_bytes = max(slot.output_bytes, len(message.data))  # did not fit: room for next time
    array = wire.to_numpy(message, "response")
    return array if as_numpy else torch.from_numpy(array.copy())


def batch_from(response: pb.AugmentResponse, as_numpy: bool = False, slot: Slot | None = None) -> Batch:
    labels = _decode(response.labels, as_numpy) if response.HasField("labels") else None
    params = json.loads(response.params_json) if response.params_json else None
    return Batch(_decode(response.x, as_numpy, slot), labels, response.label_smoothing, response.server_seconds,
                 params, request_id=response.request_id)


def dataset_batch_from(message: pb.DatasetBatch, slot: Slot | None = None) -> Batch | None:
    """A served dataset's batch (lent from ``slot`` when the server wrote it there); None when every
    sample of it was skipped (``skipped`` says why)."""
    if not message.HasField("batch"):
        return None
    batch = batch_from(message.batch, slot=slot)
    batch.indices = torch.tensor(list(message.sample_indices), dtype=torch.int64)
    batch.skipped = [(s.index, s.reason) for s in message.skipped]
    batch.batch_index, batch.num_batches = message.batch_index, message.num_batches
    return batch
