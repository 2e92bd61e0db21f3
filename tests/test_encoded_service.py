"""Encoded images through the service and the client: equality with in-process runs, refusals, DataLoaders."""

import asyncio
import json
import resource

import grpc
import numpy as np
import pytest
import torch
from image_files import image_kinds, with_size
from torch.utils.data import DataLoader

from augserve import Pipeline
from augserve.client import AsyncClient, Client, EncodedImageFolder, InvalidArgument, RemoteAugment, collate_encoded
from augserve.photos import write_imagenet_like_jpegs
from augserve.random import sample_keys
from augserve.shared_memory import SlotPool
from augserve.v1 import augserve_pb2 as pb
from server_harness import RunningServer, request

RECIPE = [{"op": "random_resized_crop", "size": [48, 40]}, {"op": "hflip"}, {"op": "rand_augment", "n": 2, "m": 9}]
MAX_SAMPLES = 16


@pytest.fixture(scope="module")
def server():
    running = RunningServer(max_batch=64, max_delay_ms=2.0, max_samples=MAX_SAMPLES)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def files() -> list[bytes]:
    return list(image_kinds().values())


@pytest.fixture(scope="module", params=[False, True], ids=["bytes", "shared-memory"])
def client(server, request):
    with Client(server.target, timeout=60, shared_memory=request.param) as c:
        yield c


def _encoded_request(files, pipeline=RECIPE, **fields) -> pb.AugmentRequest:
    message = pb.AugmentRequest(seed=5, **fields)
    message.pipeline.spec = json.dumps(pipeline)
    message.encoded.images.extend(files)
    return message


def test_bytes_in_equal_the_in_process_pipeline(client, files):
    labels = torch.arange(len(files)) % 3
    batch = client.augment(files, labels, pipeline=RECIPE, seed=9, keys=range(30, 30 + len(files)), num_classes=3,
                           return_params=True)
    local = Pipeline.from_spec(RECIPE)(files, labels, seed=9, keys=torch.arange(30, 30 + len(files)), num_classes=3)
    assert isinstance(batch.x, np.ndarray) and batch.x.shape == (len(files), 3, 48, 40)  # bytes in: numpy out
    assert np.array_equal(batch.x, local.x.numpy()) and np.array_equal(batch.labels, local.labels.numpy())
    assert batch.params[0]["box"] == local.params[0]["box"].tolist()


def test_numpy_buffers_in_numpy_out_and_map_replays(client, files):
    arrays = [np.frombuffer(f, dtype=np.uint8) for f in files]
    batch = client.augment(arrays, pipeline=RECIPE, seed=2)
    assert isinstance(batch.x, np.ndarray) and batch.x.dtype == np.uint8
    whole = Pipeline.from_spec(RECIPE)(files, seed=2).x
    assert np.array_equal(batch.x, whole.numpy())
    halves = [files[:5], files[5:]]  # keys default to running positions: the same samples as one batch
    streamed = np.concatenate([b.x.copy() for b in client.map(halves, pipeline=RECIPE, seed=2, prefetch=2)])
    assert np.array_equal(streamed, whole.numpy())


def test_async_client_takes_encoded_images(server, files):
    async def run():
        async with AsyncClient(server.target) as client:
            return (await client.augment(files[:4], pipeline=RECIPE, seed=3)).x

    assert np.array_equal(asyncio.run(run()), Pipeline.from_spec(RECIPE)(files[:4], seed=3).x.numpy())


@pytest.mark.parametrize("make, words", [
    (lambda f: _with_x(_encoded_request(f[:2])), ["x, encoded, texts: expected exactly one", "got x and encoded"]),
    (lambda f: pb.AugmentRequest(pipeline=pb.PipelineRef(name="rand-m9")), ["x, encoded, texts", "got none"]),
    (lambda f: _encoded_request(f[:2], [{"op": "hflip"}]), ["first step that fixes the output size",
                                                            "step 1 (hflip)"]),
    (lambda f: _encoded_request([f[0], f[1][:300], f[2]]), ["encoded.images[1]: truncated"]),
    (lambda f: _encoded_request([f[0], b"%PDF-1.7 not an image"]), ["encoded.images[1]", "not a JPEG, PNG or WebP"]),
    (lambda f: _encoded_request([f[5][:60] + bytes(len(f[5]) - 72) + f[5][-12:]]), ["encoded.images[0]: corrupt png"]),
    (lambda f: _encoded_request(f[:1] * (MAX_SAMPLES + 1)), ["encoded.images", f"1 to {MAX_SAMPLES} samples",
                                                             f"got {MAX_SAMPLES + 1}"]),
    (lambda f: _encoded_request([]), ["expected at least one image"]),
])
def test_bad_encoded_requests_are_invalid_argument_and_the_server_keeps_serving(server, files, make, words):
    stub = server.stub()
    with pytest.raises(grpc.RpcError) as error:
        stub.Augment(make(files), timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for word in words:
        assert word in error.value.details(), error.value.details()
    assert len(stub.Augment(_encoded_request(files[:3]), timeout=60).x.data) == 3 * 3 * 48 * 40


def _with_x(message: pb.AugmentRequest) -> pb.AugmentRequest:
    message.x.CopyFrom(request(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)).x)
    return message


def test_a_decompression_bomb_is_refused_before_the_server_allocates_it(server, files):
    bomb = with_size(files[0], 40000, 40000)  # 4.8 GB of pixels behind a few KB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InvalidArgument, match=r"encoded.images\[1\]: the jpeg header declares 40000x40000 .*"
                                              r"--max-pixels\); refused before decoding"):
        Client(server.target, shared_memory=False).augment([files[0], bomb], pipeline=RECIPE)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, grown_mib


def test_shared_memory_file_lengths_are_checked(server):
    pool = SlotPool()
    try:
        region = pool.acquire().region("x", 4096)
        message = _encoded_request([])
        message.encoded.shm.CopyFrom(pb.SharedMemoryRef(name=region.name, size=region.size))
        message.encoded.sizes.extend([3000, 3000])  # more than the region holds
        with pytest.raises(grpc.RpcError) as error:
            server.stub().Augment(message, timeout=60)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "encoded.shm" in error.value.details()
    finally:
        pool.close()


def test_remote_augment_over_a_dataloader_of_file_bytes_equals_in_process(server, tmp_path):
    write_imagenet_like_jpegs(tmp_path, count=24, seed=1, classes=3)
    folder = EncodedImageFolder(tmp_path)
    assert folder.classes == ["class0", "class1", "class2"] and len(folder) == 24
    # forkserver: this test process runs gRPC servers and clients, and gRPC does not survive a fork
    # while its threads are busy (a worker forked straight from here died with SIGSEGV in the full suite)
    loader = DataLoader(folder, batch_size=8, shuffle=True, num_workers=2, collate_fn=collate_encoded,
                        generator=torch.Generator().manual_seed(0), multiprocessing_context="forkserver")
    with Client(server.target) as client:
        remote = RemoteAugment(loader, client, RECIPE, seed=4, num_classes=3, epoch=2)
        seen = 0
        for batch, (files, labels, indices) in zip(remote, DataLoader(folder, batch_size=8, shuffle=True,
                                                                      collate_fn=collate_encoded,
                                                                      generator=torch.Generator().manual_seed(0))):
            local = Pipeline.from_spec(RECIPE)(files, labels, seed=4, keys=sample_keys(indices, 2), num_classes=3)
            assert torch.equal(batch.x, local.x) and torch.equal(batch.labels, local.labels)
            seen += len(files)
    assert seen == 24


def test_decoding_ahead_of_the_device_gives_the_same_answers_and_fails_only_the_bad_request(files):
    import concurrent.futures

    from augserve.server.app import decode_ahead

    assert decode_ahead("auto", torch.device("cpu")) is False and decode_ahead("auto", torch.device("cuda")) is True
    with pytest.raises(ValueError, match="--decode-ahead: expected auto, on or off"):
        decode_ahead("sometimes", torch.device("cpu"))
    ahead = RunningServer(max_batch=64, max_delay_ms=50.0, max_samples=MAX_SAMPLES, decode_ahead="on")
    broken = files[:2] + [files[5][:60] + bytes(len(files[5]) - 72) + files[5][-12:]]
    try:
        clients = [Client(ahead.target, shared_memory=False) for _ in range(4)]
        parts = [files[:4], files[4:8], broken, files[8:]]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # arrive together: merged into one device batch
            answers = list(pool.map(lambda pair: _try(pair[0], pair[1]), zip(clients, parts)))
        for part, answer in zip(parts, answers):
            if part is broken:
                assert isinstance(answer, InvalidArgument) and "encoded.images[2]: corrupt png" in str(answer)
            else:
                assert np.array_equal(answer.x, Pipeline.from_spec(RECIPE)(part, seed=6).x.numpy())
    finally:
        ahead.stop()


def _try(client: Client, files: list[bytes]):
    try:
        return client.augment(files, pipeline=RECIPE, seed=6)
    except InvalidArgument as error:
        return error
