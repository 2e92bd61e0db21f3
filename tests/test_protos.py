"""The generated stubs match the .proto: regenerate into a temporary folder and compare."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
GENERATED = ("augserve_pb2.py", "augserve_pb2.pyi", "augserve_pb2_grpc.py")


def test_stubs_are_fresh(tmp_path):
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "protos"), f"--python_out={tmp_path}",
               f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", str(ROOT / "protos/augserve/v1/augserve.proto")]
    subprocess.run(command, check=True, timeout=120)
    for name in GENERATED:
        fresh = (tmp_path / "augserve/v1" / name).read_text()
        committed = (ROOT / "augserve/v1" / name).read_text()
        assert fresh == committed, f"augserve/v1/{name} is stale: run `make protos`"


def test_framed_answers_parse_as_the_same_messages():
    """Tensor bytes appended after the message (one copy) read back exactly as bytes set in place."""
    import numpy as np
    import torch

    from augserve import wire
    from augserve.server.servicer import BATCH_X_DATA, X_DATA
    from augserve.v1 import augserve_pb2 as pb

    x = torch.randint(0, 256, (3, 2, 70, 90), dtype=torch.uint8)  # > 16 KiB: multi-byte length varints
    in_place = pb.AugmentResponse(request_id=7, label_smoothing=0.1)
    wire.write(in_place.x, x)
    wire.write(in_place.labels, torch.eye(3))
    framed = pb.AugmentResponse(request_id=7, label_smoothing=0.1)
    wire.write(framed.labels, torch.eye(3))
    payload = wire.describe(framed.x, x)
    assert pb.AugmentResponse.FromString(wire.frame(framed, {X_DATA: payload})) == in_place

    batch = pb.DatasetBatch(batch=framed, batch_index=4, num_batches=9, sample_indices=[5, 1, 2])
    parsed = pb.DatasetBatch.FromString(wire.frame(batch, {BATCH_X_DATA: payload}))
    assert parsed.batch == in_place and list(parsed.sample_indices) == [5, 1, 2]
    assert np.array_equal(wire.to_numpy(parsed.batch.x, "x"), x.numpy())
    assert wire.frame(in_place, {}) == in_place.SerializeToString()


def test_requests_parse_with_the_tensor_bytes_left_in_place():
    """The server reads x.data as a view of the received bytes; the rest parses as the standard parser would."""
    import numpy as np
    import pytest
    import torch
    from google.protobuf.message import DecodeError

    from augserve import wire
    from augserve.server.servicer import REQUEST_X_DATA
    from augserve.v1 import augserve_pb2 as pb

    x = torch.randint(0, 256, (2, 3, 100, 100), dtype=torch.uint8)
    request = pb.AugmentRequest(seed=3, keys=[9, 8], request_id=4, num_classes=5)
    request.pipeline.name = "rand-m9-n2"
    wire.write(request.x, x)
    wire.write(request.labels, torch.tensor([1, 2]))
    raw = request.SerializeToString()
    message, data = wire.parse(pb.AugmentRequest, raw, REQUEST_X_DATA)
    assert bytes(data) == request.x.data and not message.x.data
    expected = pb.AugmentRequest()
    expected.CopyFrom(request)
    expected.x.ClearField("data")
    assert message == expected
    assert np.array_equal(wire.to_numpy(message.x, "x", data=data), x.numpy())
    with pytest.raises(wire.WireError, match=r"x.data: expected 60000 bytes"):
        wire.to_numpy(message.x, "x", data=data[1:])

    appended = wire.frame(expected, {REQUEST_X_DATA: x.numpy()})  # the bytes in a second x occurrence
    again, data = wire.parse(pb.AugmentRequest, appended, REQUEST_X_DATA)
    assert again == expected and bytes(data) == request.x.data
    no_tensor = pb.AugmentRequest(seed=1)
    assert wire.parse(pb.AugmentRequest, no_tensor.SerializeToString(), REQUEST_X_DATA) == (no_tensor, None)
    for broken in (raw[:-5], b"\x2a\xff\xff\xff\xff\x0f", b"\x0b\x00"):  # truncated, huge length, a group
        with pytest.raises(DecodeError):
            pb.AugmentRequest.FromString(broken)
        with pytest.raises(DecodeError):
            wire.parse(pb.AugmentRequest, broken, REQUEST_X_DATA)
