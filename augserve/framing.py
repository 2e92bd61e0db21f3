"""Messages whose tensor bytes travel beside them: one copy to send, none to receive.

A ``Tensor``'s ``data`` is nearly all of an augment message. Set on a protobuf message it is copied
three times on the way out (to bytes, into the message, into the serialized string) and twice on the
way in (the parse, then each read of the field). Here the message is written without it: protobuf
serializes the small rest, and each field that leads to a payload is written by hand, its tag and length
then its message the same way, down to the tensor, whose ``data`` is the payload itself. The bytes are
the plain message (its fields in another order), every field once, so any parser in any language reads
them; protobufjs, for one, keeps only the last occurrence of a message field rather than merging them.

Received bytes are scanned for those fields: each ``data`` becomes a view of the received buffer and
the small rest is parsed by protobuf as usual. Repeated occurrences of a field (as older servers sent)
read as protobuf reads them: merged, the last ``data`` wins. Anything the scan does not expect
(truncation, groups, more fields than a message of ours has) falls back to protobuf's own parse, so
malformed bytes fail exactly as they would without this module.
"""

from __future__ import annotations

from typing import Any

from augserve.v1 import augserve_pb2 as pb

Path = tuple[int, ...]  # field numbers from the message down to a Tensor field

_DATA = 3  # Tensor.data
_LEN = 2  # wire type of bytes and sub-messages
MAX_FIELDS = 64  # fields scanned per message level before the scan leaves the bytes to protobuf
WORTH = 1 << 16  # payload bytes below which the message is parsed whole (stripping would copy the rest once more)

X, LABELS = (pb.AugmentRequest.X_FIELD_NUMBER,), (pb.AugmentRequest.LABELS_FIELD_NUMBER,)
ANSWER_X, ANSWER_LABELS = (pb.AugmentResponse.X_FIELD_NUMBER,), (pb.AugmentResponse.LABELS_FIELD_NUMBER,)
BATCH = (pb.DatasetBatch.BATCH_FIELD_NUMBER,)
# Where each message's tensors are (only these are scanned).
TENSORS: dict[str, tuple[Path, ...]] = {
    pb.AugmentRequest.DESCRIPTOR.full_name: (X, LABELS),
    pb.AugmentResponse.DESCRIPTOR.full_name: (ANSWER_X, ANSWER_LABELS),
    pb.DatasetBatch.DESCRIPTOR.full_name: (BATCH + ANSWER_X, BATCH + ANSWER_LABELS),
}


def has_tensors(message_class: type) -> bool:
    return message_class.DESCRIPTOR.full_name in TENSORS


class Framed:
    """A message and the ``data`` of some of its tensors (by path), carried beside it."""

    __slots__ = ("message", "payloads")

    def __init__(self, message: Any, payloads: dict[Path, Any] | None = None):
        self.message = message
        self.payloads = {path: memoryview(data).cast("B") for path, data in (payloads or {}).items()}

    def payload(self, path: Path) -> memoryview | None:
        """The ``data`` of the tensor at ``path``, or None when it is in the message (or absent)."""
        return self.payloads.get(path)

    def inner(self, outer: Path) -> "Framed":
        """The sub-message at ``outer`` with the payloads below it (their paths from there)."""
        message = self.message
        for number in outer:
            message = getattr(message, message.DESCRIPTOR.fields_by_number[number].name)
        depth = len(outer)
        return Framed(message, {path[depth:]: data for path, data in self.payloads.items() if path[:depth] == outer})

    def payloads_at(self, outer: Path) -> dict[Path, memoryview]:
        """The payloads with their paths from a message that holds this one in the field at ``outer``."""
        return {(*outer, *path): data for path, data in self.payloads.items()}

    @property
    def nbytes(self) -> int:
        return self.message.ByteSize() + sum(data.nbytes for data in self.payloads.values())

    def to_bytes(self) -> bytes:
        """The wire bytes: each field once, each payload copied once (into the one join)."""
        if not self.payloads:
            return self.message.SerializeToString()
        return b"".join(_parts(self.message, self.payloads))


def serialize(item: Any) -> bytes:
    """A response or request for gRPC: ``Framed``, a protobuf message, or bytes already framed."""
    if isinstance(item, Framed):
        return item.to_bytes()
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    return item.SerializeToString()


def parse(raw: bytes, message_class: type) -> Framed:
    """The message in ``raw`` with its tensors' ``data`` as views of ``raw`` (``DecodeError`` as protobuf's)."""
    paths = TENSORS.get(message_class.DESCRIPTOR.full_name, ())
    payloads: dict[Path, memoryview] = {}
    if paths:
        try:
            rest = _strip(memoryview(raw), 0, len(raw), (), paths, payloads)
        except _Unexpected:
            payloads = {}
    if not payloads or sum(data.nbytes for data in payloads.values()) < WORTH:  # e.g. encoded files and few labels
        return Framed(message_class.FromString(raw))
    return Framed(message_class.FromString(b"".join(rest)), payloads)


def deserializer(message_class: type):
    """``parse`` for one message class, as a gRPC response or request deserializer."""
    return lambda raw: parse(raw, message_class)


class _Unexpected(Exception):
    """Bytes the scan leaves to protobuf."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _parts(message: Any, payloads: dict[Path, memoryview]) -> list:
    """``message`` serialized in parts, with each payload as the ``data`` of the tensor at its path from it."""
    if () in payloads:  # the tensor itself: its dtype and shape, then its data
        data = payloads[()]
        return [message.SerializeToString(), _varint(_DATA << 3 | _LEN), _varint(data.nbytes), data]
    below: dict[int, dict[Path, memoryview]] = {}
    for path, data in payloads.items():
        below.setdefault(path[0], {})[path[1:]] = data
    names = {number: message.DESCRIPTOR.fields_by_number[number].name for number in below}
    rest = type(message)()
    rest.CopyFrom(message)
    for name in names.values():
        rest.ClearField(name)  # written below, once, with everything under it
    parts = [rest.SerializeToString()]
    for number, inner in below.items():
        body = _parts(getattr(message, names[number]), inner)
        parts += [_varint(number << 3 | _LEN), _varint(sum(len(part) for part in body)), *body]
    return parts


def _read_varint(view: memoryview, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while position < end and shift < 64:
        byte = view[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    raise _Unexpected


def _strip(view: memoryview, start: int, end: int, at: Path, paths: tuple[Path, ...],
           payloads: dict[Path, memoryview]) -> list:
    """The parts of ``view[start:end]`` (a message at path ``at``) without the tensors' ``data``, which go
    to ``payloads`` (the last occurrence wins, as in protobuf)."""
    is_tensor = at in paths
    below = {path[len(at)] for path in paths if len(path) > len(at) and path[:len(at)] == at}
    parts, position, fields = [], start, 0
    while position < end:
        fields += 1
        if fields > MAX_FIELDS:
            raise _Unexpected
        field_start = position
        tag, position = _read_varint(view, position, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise _Unexpected
        if wire_type == 0:
            _, position = _read_varint(view, position, end)
        elif wire_type == 1 or wire_type == 5:
            position += 8 if wire_type == 1 else 4
        elif wire_type == _LEN:
            length, value_start = _read_varint(view, position, end)
            position = value_start + length
            if position > end:
                raise _Unexpected
            if is_tensor and number == _DATA:
                payloads[at] = view[value_start:position]
                continue
            if number in below:
                inner = _strip(view, value_start, position, (*at, number), paths, payloads)
                parts += [_varint(tag), _varint(sum(len(part) for part in inner)), *inner]
                continue
        else:  # groups (3, 4) and invalid wire types
            raise _Unexpected
        if position > end:
            raise _Unexpected
        parts.append(view[field_start:position])
    return parts
