"""Tensor bytes beside the message: any protobuf parser reads the framed bytes as the plain message, and
received bytes give the same message whatever protobuf would make of them (malformed ones included)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from google.protobuf import message as protobuf_message

from augserve import framing, wire
from augserve.v1 import augserve_pb2 as pb


@pytest.fixture(autouse=True)
def scan_every_payload(monkeypatch):
    """The messages here are small: scan them as a batch-sized one is scanned."""
    monkeypatch.setattr(framing, "WORTH", 0)


def _response(batch: int = 4) -> tuple[pb.AugmentResponse, dict]:
    rng = np.random.default_rng(batch)
    x = rng.integers(0, 256, (batch, 3, 8, 8), dtype=np.uint8)
    labels = rng.random((batch, 10), dtype=np.float32)
    response = pb.AugmentResponse(request_id=7, params_json="[]", label_smoothing=0.1)
    payloads = {framing.ANSWER_X: wire.describe(response.x, x),
                framing.ANSWER_LABELS: wire.describe(response.labels, labels)}
    return response, payloads


def _request() -> framing.Framed:
    message = pb.AugmentRequest(seed=3, num_classes=10, request_id=5)
    message.pipeline.name = "rand-m9-n2"
    message.keys.extend(range(4))
    x = np.arange(4 * 3 * 5 * 5, dtype=np.uint8).reshape(4, 3, 5, 5)
    return framing.Framed(message, {framing.X: wire.describe(message.x, x),
                                    framing.LABELS: wire.describe(message.labels, np.arange(4, dtype=np.int64))})


def _dataset_batch() -> framing.Framed:
    response, payloads = _response()
    message = pb.DatasetBatch(batch_index=2, num_batches=9, sample_indices=[4, 1, 7, 3])
    message.batch.CopyFrom(response)
    message.skipped.add(index=5, reason="truncated JPEG")
    return framing.Framed(message, framing.Framed(response, payloads).payloads_at(framing.BATCH))


def _inline(framed: framing.Framed) -> protobuf_message.Message:
    """The plain message: every payload set in its tensor, as a client without ``framing`` sends it."""
    message = type(framed.message)()
    message.CopyFrom(framed.message)
    for path, data in framed.payloads.items():
        tensor = message
        for number in path:
            tensor = getattr(tensor, tensor.DESCRIPTOR.fields_by_number[number].name)
        tensor.data = bytes(data)
    return message


FRAMED = {"AugmentRequest": _request, "AugmentResponse": lambda: framing.Framed(*_response()),
          "DatasetBatch": _dataset_batch}


@pytest.mark.parametrize("kind", FRAMED)
def test_framed_bytes_are_the_plain_message_to_protobuf(kind):
    framed = FRAMED[kind]()
    plain = _inline(framed)
    raw = framed.to_bytes()
    assert type(plain).FromString(raw) == plain  # what any language's parser reads
    assert framed.nbytes <= len(raw) <= framed.nbytes + 16 * len(framed.payloads)  # headers only on top


@pytest.mark.parametrize("kind", FRAMED)
@pytest.mark.parametrize("sender", ["framed", "inline"])
def test_received_tensors_are_views_of_the_received_bytes(kind, sender):
    framed = FRAMED[kind]()
    raw = framed.to_bytes() if sender == "framed" else _inline(framed).SerializeToString()
    received = framing.parse(raw, type(framed.message))
    assert set(received.payloads) == set(framed.payloads)
    for path, data in framed.payloads.items():
        assert received.payload(path).tobytes() == data.tobytes()
        assert received.payload(path).obj is raw  # no copy of the tensor bytes was made
    assert _inline(received) == _inline(framed)


def test_a_batch_inside_a_dataset_answer_reads_as_the_answer():
    received = framing.parse(_dataset_batch().to_bytes(), pb.DatasetBatch)
    inner = received.inner(framing.BATCH)
    response, payloads = _response()
    assert inner.message.request_id == response.request_id
    assert inner.payload(framing.ANSWER_X).tobytes() == payloads[framing.ANSWER_X].tobytes()
    batch = wire.to_numpy(inner.message.x, "x", data=inner.payload(framing.ANSWER_X))
    assert batch.shape == (4, 3, 8, 8)


def test_the_last_data_wins_as_in_protobuf():
    first = pb.AugmentRequest(request_id=1)
    first.x.dtype, first.x.data = "uint8", b"old!"
    second = pb.AugmentRequest()
    second.x.shape[:] = [4]
    second.x.data = b"new!"
    raw = first.SerializeToString() + second.SerializeToString()
    received = framing.parse(raw, pb.AugmentRequest)
    assert _inline(received) == pb.AugmentRequest.FromString(raw)
    assert received.payload(framing.X).tobytes() == b"new!"


def _mutations(raw: bytes, count: int, seed: int):
    rng = random.Random(seed)
    for _ in range(count):
        kind = rng.randrange(4)
        cut = rng.randrange(len(raw))
        if kind == 0:
            yield raw[:cut]  # truncated
        elif kind == 1:
            yield raw[:cut] + bytes([rng.randrange(256)]) + raw[cut + 1:]  # one byte changed
        elif kind == 2:
            yield raw[:cut] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6))) + raw[cut:]  # inserted
        else:
            yield raw[:cut] + raw[cut + rng.randrange(1, 9):]  # bytes dropped


@pytest.mark.parametrize("kind", FRAMED)
def test_malformed_bytes_fail_or_parse_exactly_as_protobuf_does(kind):
    framed = FRAMED[kind]()
    message_class = type(framed.message)
    raws = [framed.to_bytes(), _inline(framed).SerializeToString()]
    checked = failed = 0
    for seed, raw in enumerate(raws):
        for mutated in _mutations(raw, 600, seed):
            try:
                expected = message_class.FromString(mutated)
            except protobuf_message.DecodeError:
                with pytest.raises(protobuf_message.DecodeError):
                    framing.parse(mutated, message_class)
                failed += 1
                continue
            received = framing.parse(mutated, message_class)
            assert _inline(received).SerializeToString(deterministic=True) == \
                expected.SerializeToString(deterministic=True)
            checked += 1
    assert checked > 100 and failed > 100  # both kinds of outcome were met


def test_more_fields_than_the_scan_reads_are_left_to_protobuf():
    framed = _request()
    raw = framed.to_bytes() + b"".join(pb.AugmentRequest(keys=[i]).SerializeToString()
                                       for i in range(framing.MAX_FIELDS + 10))
    received = framing.parse(raw, pb.AugmentRequest)
    assert received.payloads == {}  # the plain parse: data stays in the message
    assert received.message == pb.AugmentRequest.FromString(raw)


def test_small_payloads_are_parsed_whole_and_large_ones_are_left_in_place(monkeypatch):
    monkeypatch.setattr(framing, "WORTH", 1 << 16)
    small = framing.parse(_request().to_bytes(), pb.AugmentRequest)
    assert small.payloads == {} and len(small.message.x.data) == 4 * 3 * 5 * 5  # an encoded request's labels: no copy
    message = pb.AugmentRequest(request_id=2)
    big = np.zeros((2, 3, 128, 128), np.uint8)
    raw = framing.Framed(message, {framing.X: wire.describe(message.x, big)}).to_bytes()
    assert framing.parse(raw, pb.AugmentRequest).payload(framing.X).obj is raw

