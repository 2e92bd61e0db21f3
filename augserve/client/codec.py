"""Requests from arrays, batches from responses: where the client turns arrays into messages and back.

NumPy first: torch is never imported here. A torch tensor is recognised only when the caller's
process already imported torch (it cannot be one otherwise), and torch in gives torch out.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NamedTuple

import numpy as np

from augserve import framing, wire
from augserve.client.batch import Array, Batch, is_torch
from augserve.shared_memory import Slot
from augserve.spec import is_spec_text
from augserve.v1 import augserve_pb2 as pb

def split_item(item) -> tuple[Array, Array | None, Any, Any]:
    """A ``map`` item: ``x``, ``(x, labels)``, ``(x, labels, keys)`` or ``(x, labels, keys, lengths)``; ``x`` may
    be a list of encoded images or of sentences."""
    if isinstance(item, (tuple, list)) and not is_encoded(item) and not is_texts(item):
        if not 1 <= len(item) <= 4:
            raise ValueError(f"map: expected x, (x, labels), (x, labels, keys) or (x, labels, keys, lengths), "
                             f"got a {len(item)}-tuple")
        return tuple(item) + (None,) * (4 - len(item))
    return item, None, None, None


def pipeline_ref(pipeline: str | dict | list, strength: float | None = None) -> pb.PipelineRef:
    """A preset / timm name, or an inline spec (dict, list, JSON or YAML text), at ``strength`` (None: 1)."""
    if isinstance(pipeline, (dict, list)):
        ref = pb.PipelineRef(spec=json.dumps(pipeline))
    elif not isinstance(pipeline, str) or not pipeline.strip():
        raise ValueError(f"pipeline: expected a preset name, a spec or its text, got {pipeline!r}")
    else:
        ref = pb.PipelineRef(spec=pipeline) if is_spec_text(pipeline) else pb.PipelineRef(name=pipeline)
    if strength is not None:
        if isinstance(strength, bool) or not isinstance(strength, (int, float)):
            raise ValueError(f"strength: expected a number, got {strength!r}")
        ref.strength = float(strength)
    return ref


def _as_array(value: Array, field: str) -> Array:
    if isinstance(value, np.ndarray) or is_torch(value):
        return value
    raise TypeError(f"{field}: expected a numpy array or torch tensor, got {type(value).__name__}")


def is_encoded(x: Any) -> bool:
    """A list of encoded image files (bytes, memoryviews, 1-D uint8 arrays) rather than a dense batch."""
    return isinstance(x, (list, tuple)) and bool(x) and all(map(_is_file, x))


def _is_file(item: Any) -> bool:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return True
    return (isinstance(item, np.ndarray) or is_torch(item)) and item.ndim == 1 and wire.dtype_name(item) == "uint8"


def is_texts(x: Any) -> bool:
    """A list of sentences (str) for a text pipeline."""
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(item, str) for item in x)


def samples(x: Any, texts: Any) -> Any:
    """What ``augment`` sends: ``x`` (a batch, encoded files or sentences) or ``texts`` (sentences), exactly one."""
    if (x is None) == (texts is None):
        raise ValueError(f"x, texts: expected exactly one (a batch, encoded files or sentences), got "
                         f"{'both' if x is not None else 'neither'}")
    if texts is not None and not is_texts(texts):
        raise ValueError(f"texts: expected a non-empty list of sentences (str), got {type(texts).__name__}"
                         f"{' (empty)' if isinstance(texts, (list, tuple)) and not texts else ''}")
    return x if texts is None else texts


def _utf8(sentences: list[str]) -> list[bytes]:
    encoded = []
    for number, sentence in enumerate(sentences):
        try:
            encoded.append(sentence.encode())
        except UnicodeEncodeError as error:  # a lone surrogate, as os.fsdecode makes of undecodable file names
            raise ValueError(f"texts[{number}]: not encodable as UTF-8 ({error.reason} at character "
                             f"{error.start}); send text, not escaped bytes") from None
    return encoded


def wants_torch(x: Any) -> bool:
    """Torch in, torch out: a torch batch, or encoded images given as torch tensors; anything else gets numpy."""
    return is_torch(x) or is_encoded(x) and is_torch(x[0])


def _file_bytes(item: Any) -> memoryview:
    if is_torch(item):
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
                    out_dtype=None, return_params=False, request_id=0, defer_normalize=False,
                    slot: Slot | None = None, strength: float | None = None, lengths=None) -> framing.Framed:
    """The request (its tensors' bytes beside it, views of the caller's arrays until sent); with a
    shared-memory ``slot``, x travels in its input region and the answer comes back in its output region
    (sized to the last answer, or to x at first).

    ``x`` is a dense batch, a list of encoded image files (JPEG, PNG, WebP bytes) of any sizes, or a list of
    sentences (``texts``, UTF-8, in the message both ways: ``slot`` goes unused); ``lengths`` each waveform's
    valid length (the server checks them against the batch).
    """
    message = pb.AugmentRequest(seed=int(seed), num_classes=int(num_classes or 0), out_dtype=out_dtype or "",
                                return_params=return_params, request_id=request_id, defer_normalize=defer_normalize)
    message.pipeline.CopyFrom(pipeline_ref(pipeline, strength))
    payloads = {}
    if is_texts(x):
        message.texts.extend(_utf8(x))
        slot = None
    elif is_encoded(x):
        sent = _write_encoded(message.encoded, x, slot)
    else:
        x = _as_array(x, "x")
        sent = x.nbytes
        if slot is None:
            payloads[framing.X] = wire.describe(message.x, x)
        else:
            region = slot.region("x", x.nbytes)
            wire.write_shared(message.x, x, region.buf[:x.nbytes], pb.SharedMemoryRef(name=region.name,
                                                                                       size=region.size))
    if slot is not None:
        output = slot.region("out", max(slot.output_bytes, sent))
        message.output_shm.CopyFrom(pb.SharedMemoryRef(name=output.name, size=output.size))
    if keys is not None:
        message.keys.extend(np.asarray(keys, dtype=np.int64).reshape(-1).tolist())
    if lengths is not None:
        message.lengths.extend(_integers(lengths, "lengths"))
    if labels is not None:
        payloads[framing.LABELS] = wire.describe(message.labels, _as_array(labels, "labels"))
    return framing.Framed(message, payloads)


def _integers(values, field: str) -> list[int]:
    """One row of integers (numpy, torch on any device, or a sequence), refused here when it holds fractions."""
    if is_torch(values):
        values = values.detach().cpu().numpy()
    array = np.asarray(values).reshape(-1)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{field}: expected integers, got {array.dtype}")
    return array.astype(np.int64).tolist()


class MapRequests:
    """``map`` items (``x``, ``(x, labels)``, ``(x, labels, keys)`` or ``(x, labels, keys, lengths)``) as
    requests; without keys, a batch's keys are the running sample positions, so every sample of the sequence
    draws its own parameters."""

    def __init__(self, *, prefetch: int, **options):
        if prefetch < 1:
            raise ValueError(f"prefetch: expected at least 1, got {prefetch}")
        self.options, self.position, self.request_id = options, 0, 0

    def make(self, item, slot: Slot | None) -> "Sent":
        """The request framed now (the item's arrays copied once: writes to them later cannot change it)."""
        x, labels, keys, lengths = split_item(item)
        if keys is None:
            keys = np.arange(self.position, self.position + len(x))
        self.position += len(x)
        request = augment_request(x, labels, keys=keys, request_id=self.request_id, slot=slot, lengths=lengths,
                                  **self.options)
        self.request_id += 1
        return Sent(request.to_bytes(), request.message, wants_torch(x), slot)


class Sent(NamedTuple):
    """A request on a stream: its wire bytes (sent again as they are after a failover), its fields, whether
    its answer goes back as torch, and its shared-memory slot."""

    wire: bytes
    request: pb.AugmentRequest
    as_torch: bool
    slot: Slot | None


def dataset_request(dataset: str, pipeline, batch_size: int, *, epoch: int, seed: int, shard_index: int,
                    num_shards: int, start_batch: int, out_dtype: str | None, return_params: bool,
                    defer_normalize: bool = False, strength: float | None = None,
                    even_shards: bool | None = None) -> pb.StreamDatasetRequest:
    """``even_shards`` None: on when there are several shards, which data-parallel ranks must end together."""
    even_shards = num_shards > 1 if even_shards is None else even_shards
    request = pb.StreamDatasetRequest(dataset=dataset, batch_size=batch_size, epoch=epoch, seed=seed,
                                      shard_index=shard_index, num_shards=num_shards, start_batch=start_batch,
                                      out_dtype=out_dtype or "", return_params=return_params,
                                      defer_normalize=defer_normalize, even_shards=even_shards)
    request.pipeline.CopyFrom(pipeline_ref(pipeline, strength))
    return request


def _decode(message: pb.Tensor, data, as_torch: bool, slot: Slot | None = None) -> Array:
    """Inline bytes (``data`` when they came beside the message): numpy gets a read-only zero-copy view of
    the received bytes, torch one (writable) copy. Shared memory: a writable view of the slot's output
    region, lent until the result is dropped."""
    if message.HasField("shm"):
        array = slot.lend(wire.to_numpy(message, "response", regions=slot, data=data))  # the slot checks it is its own
        return _torch().from_numpy(array) if as_torch else array
    array = wire.to_numpy(message, "response", data=data)
    if slot is not None:
        slot.output_bytes = max(slot.output_bytes, array.nbytes)  # did not fit: room for next time
    return _torch().from_numpy(array.copy()) if as_torch else array


def _torch():
    return sys.modules["torch"]  # torch out only for torch in: the caller imported it


def batch_from(received: framing.Framed, as_torch: bool = False, slot: Slot | None = None,
               out_dtype: str | None = None) -> Batch:
    """The batch in an ``AugmentResponse`` as received (``Framed``)."""
    response = received.message
    labels = _decode(response.labels, received.payload(framing.ANSWER_LABELS), as_torch) \
        if response.HasField("labels") else None
    x = list(response.texts) if response.texts else _decode(response.x, received.payload(framing.ANSWER_X),
                                                            as_torch, slot)
    params = json.loads(response.params_json) if response.params_json else None
    normalize = None
    if response.HasField("deferred_normalize"):
        normalize = (list(response.deferred_normalize.mean), list(response.deferred_normalize.std))
    lengths = np.array(response.lengths, dtype=np.int64) if response.lengths else None
    if lengths is not None and as_torch:
        lengths = _torch().from_numpy(lengths)
    return Batch(x, labels, response.label_smoothing, response.server_seconds, params,
                 request_id=response.request_id, normalize=normalize, out_dtype=out_dtype or None, lengths=lengths)


def dataset_batch_from(received: framing.Framed, slot: Slot | None = None,
                       out_dtype: str | None = None) -> Batch | None:
    """A served dataset's batch (a ``DatasetBatch`` as received; lent from ``slot`` when the server wrote it
    there); None when every sample of it was skipped (``skipped`` says why)."""
    message = received.message
    if not message.HasField("batch"):
        return None
    batch = batch_from(received.inner(framing.BATCH), slot=slot, out_dtype=out_dtype)
    batch.indices = np.array(message.sample_indices, dtype=np.int64)
    batch.padding = np.array(message.padding, dtype=bool) if message.padding else np.zeros(len(batch.indices), bool)
    batch.skipped = [(s.index, s.reason) for s in message.skipped]
    batch.batch_index, batch.num_batches = message.batch_index, message.num_batches
    return batch
