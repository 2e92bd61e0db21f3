"""Served datasets of image files: class folders and tar shards read from disk, sharding, resume, bad files, memory."""

import json
import os

import numpy as np
import pytest
import torch
from image_files import image_kinds

from augserve.client import Client
from augserve.photos import write_imagenet_like_jpegs
from augserve.server.dataset_tools import describe, pack_folder
from augserve.server.datasets import load_datasets
from augserve.server.file_datasets import expand_braces, index_folder, index_shards
from augserve.v1 import augserve_pb2 as pb
from augserve.v1 import augserve_pb2_grpc as rpc
from server_harness import ServerProcess

SPEC = [{"op": "random_resized_crop", "size": 48}, {"op": "hflip"}, {"op": "rand_augment", "n": 2, "m": 9}]
BATCH = 8


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A class folder of JPEGs of ImageNet-like sizes plus PNG and WebP files, and the same packed as 3 shards."""
    root = tmp_path_factory.mktemp("datasets")
    write_imagenet_like_jpegs(root / "folder", count=27, classes=3, seed=2)
    kinds = image_kinds()
    for label, kind in enumerate(("png rgb", "png palette", "webp lossy")):
        (root / "folder" / f"class{label}" / f"extra.{kind.split()[0]}").write_bytes(kinds[kind])
    pack_folder(str(root / "folder"), str(root / "shards"), samples_per_shard=12, prefix="train")
    (root / "serve.yaml").write_text(
        f"datasets:\n  folder: {{type: folder, path: {root / 'folder'}}}\n"
        f"  shards: {{type: shards, shards: '{root}/shards/train-{{000000..000002}}.tar'}}\n")
    return root


@pytest.fixture(scope="module")
def server(root):
    replica = ServerProcess("--config", str(root / "serve.yaml"), "--max-batch", "64")
    yield replica
    replica.stop()


def _epoch(client, dataset, epoch=1, **options) -> dict[int, torch.Tensor]:
    out = {}
    for batch in client.stream_dataset(dataset, SPEC, BATCH, seed=3, epoch=epoch, **options):
        for index, x in zip(batch.indices.tolist(), batch.x):
            assert index not in out, f"index {index} delivered twice"
            out[index] = x.copy()
    return out


def test_a_folder_and_its_shards_index_the_same_samples(root):
    folder = index_folder("folder", str(root / "folder"))
    shards = index_shards("shards", str(root / "shards" / "train-*.tar"))
    assert len(folder) == len(shards) == 30 and shards.shards == 3
    assert torch.equal(folder.labels, shards.labels) and folder.num_classes == shards.num_classes == 3
    indices = torch.tensor([0, 11, 12, 29])
    assert folder.read(indices, 1 << 30).x == shards.read(indices, 1 << 30).x
    assert expand_braces("a-{08..10}-{x,y}.tar") == ["a-08-x.tar", "a-08-y.tar", "a-09-x.tar", "a-09-y.tar",
                                                   "a-10-x.tar", "a-10-y.tar"]


def test_two_shards_cover_the_epoch_once_and_equal_the_unsharded_epoch(server):
    with Client(server.target) as client:
        whole = _epoch(client, "folder")
        assert sorted(whole) == list(range(30)) and next(iter(whole.values())).shape == (3, 48, 48)
        halves = [_epoch(client, "folder", shard_index=k, num_shards=2) for k in range(2)]
        assert not set(halves[0]) & set(halves[1]) and set(halves[0]) | set(halves[1]) == set(whole)
        for half in halves:
            assert all(np.array_equal(x, whole[i]) for i, x in half.items())
        from_shards = _epoch(client, "shards")  # same files, same keys: the same samples bit for bit
        assert sorted(from_shards) == list(range(30))
        assert all(np.array_equal(from_shards[i], whole[i]) for i in whole)
        resumed = list(client.stream_dataset("shards", SPEC, BATCH, seed=3, epoch=1, start_batch=2))
        assert [b.batch_index for b in resumed] == [2, 3]
        assert all(np.array_equal(x, whole[i]) for b in resumed for i, x in zip(b.indices.tolist(), b.x))


def _shared_stream(server, messages) -> list[pb.DatasetBatch]:
    stub = rpc.AugmentationStub(server.channel)
    return list(stub.StreamDatasetShared(iter(messages), timeout=120))


def test_a_same_host_stream_writes_batches_into_the_regions_the_client_offers(server):
    from multiprocessing import shared_memory

    start = pb.DatasetStreamMessage(start=pb.StreamDatasetRequest(
        dataset="folder", batch_size=BATCH, seed=3, epoch=1, pipeline=pb.PipelineRef(spec=json.dumps(SPEC))))
    regions = [shared_memory.SharedMemory(create=True, size=BATCH * 3 * 48 * 48,
                                          name=f"augserve_test_{os.getpid()}_{k}") for k in range(4)]
    try:
        offers = [pb.SharedMemoryRef(name=r.name, size=r.size) for r in regions]
        answers = _shared_stream(server, [pb.DatasetStreamMessage(start=start.start, outputs=offers)])
        inline = list(rpc.AugmentationStub(server.channel).StreamDataset(start.start, timeout=120))
        assert len(answers) == len(inline) == 4
        names = [a.batch.x.shm.name for a in answers]
        assert sorted(names) == sorted(r.name for r in regions)  # each offered region used once, then none
        by_name = {r.name: r for r in regions}
        for shared, plain in zip(answers, inline):
            assert list(shared.sample_indices) == list(plain.sample_indices) and not shared.batch.x.data
            ref, shape = shared.batch.x.shm, tuple(shared.batch.x.shape)
            written = np.frombuffer(bytes(by_name[ref.name].buf[ref.offset:ref.offset + ref.size]), np.uint8)
            assert np.array_equal(written.reshape(shape), np.frombuffer(plain.batch.x.data, np.uint8).reshape(shape))
        few = _shared_stream(server, [pb.DatasetStreamMessage(start=start.start, outputs=offers[:1])])  # rest inline
        assert [a.batch.x.HasField("shm") for a in few].count(True) == 1 and all(
            a.batch.x.data == b.batch.x.data for a, b in zip(few, inline) if not a.batch.x.HasField("shm"))
    finally:
        for region in regions:
            region.close()
            region.unlink()


@pytest.mark.parametrize("messages, words", [
    (lambda start, offer: [offer], "request 0 of the stream: expected start"),
    (lambda start, offer: [start, start], "request 1 of the stream: expected only outputs"),
    (lambda start, offer: [pb.DatasetStreamMessage(start=start.start, outputs=list(offer.outputs) * 17)],
     "request 0 of the stream: expected at most 16 output regions"),
    (lambda start, offer: [start, pb.DatasetStreamMessage(outputs=[pb.SharedMemoryRef(name="../etc/passwd")])],
     "output_shm"),
])
def test_a_bad_shared_stream_is_refused_by_name_and_the_server_keeps_serving(server, messages, words):
    import grpc

    start = pb.DatasetStreamMessage(start=pb.StreamDatasetRequest(
        dataset="folder", batch_size=BATCH, pipeline=pb.PipelineRef(spec=json.dumps(SPEC))))
    offer = pb.DatasetStreamMessage(outputs=[pb.SharedMemoryRef(name="augserve_never_made", size=1 << 20)])
    with pytest.raises(grpc.RpcError) as error:
        _shared_stream(server, messages(start, offer))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in error.value.details()
    assert len(_shared_stream(server, [start])) == 4  # and serves the next stream (inline: nothing offered)


def _through_shared_memory(server, monkeypatch, stream_two_epochs) -> None:
    """Two epochs streamed by ``stream_two_epochs(target)`` equal the same epochs as gRPC bytes, the first
    batch came inline (its size unknown yet) and every batch of the second epoch in an offered region."""
    from augserve.client import codec

    written, original = [], codec.dataset_batch_from

    def recording(message, slot=None, out_dtype=None):
        written.append(slot is not None)
        return original(message, slot, out_dtype)

    with Client(server.target, shared_memory=False) as client:
        inline = [_epoch(client, "folder", epoch=e) for e in (1, 2)]
    monkeypatch.setattr(codec, "dataset_batch_from", recording)
    shared = stream_two_epochs(server.target)
    assert written[:1] == [False] and written[4:] == [True] * 4
    for a, b in zip(shared, inline):
        assert a.keys() == b.keys() and all(np.array_equal(a[i], b[i]) for i in a)


def test_the_client_streams_same_host_batches_through_shared_memory_bit_identical_to_bytes(server, monkeypatch):
    def stream(target):
        with Client(target) as client:
            return [_epoch(client, "folder", epoch=e) for e in (1, 2)]

    _through_shared_memory(server, monkeypatch, stream)


def test_the_async_client_streams_same_host_batches_through_shared_memory_too(server, monkeypatch):
    import asyncio

    from augserve.client import AsyncClient

    async def epochs(target):
        async with AsyncClient(target) as client:
            return [{i: x.copy() async for batch in client.stream_dataset("folder", SPEC, BATCH, seed=3, epoch=epoch)
                     for i, x in zip(batch.indices.tolist(), batch.x)} for epoch in (1, 2)]

    _through_shared_memory(server, monkeypatch, lambda target: asyncio.run(epochs(target)))


def test_bad_files_are_left_out_reported_counted_and_the_rest_delivered_once(tmp_path):
    paths = write_imagenet_like_jpegs(tmp_path / "bad", count=12, classes=2, seed=5)
    good = paths[0].read_bytes()
    kinds = image_kinds()
    png = kinds["png rgb"]
    (tmp_path / "bad" / "class0" / "a_truncated.jpg").write_bytes(good[:len(good) // 2])
    (tmp_path / "bad" / "class0" / "b_text.jpg").write_text("this is not an image\n")
    (tmp_path / "bad" / "class1" / "c_corrupt.png").write_bytes(png[:60] + bytes(len(png) - 72) + png[-12:])
    (tmp_path / "bad" / "class1" / "d_deleted.jpg").write_bytes(good)
    (tmp_path / "bad.yaml").write_text(f"datasets:\n  bad: {{type: folder, path: {tmp_path / 'bad'}}}\n")
    dataset = index_folder("bad", str(tmp_path / "bad"))
    bad = {dataset.paths.index(str(tmp_path / "bad" / name)): name for name in
           ("class0/a_truncated.jpg", "class0/b_text.jpg", "class1/c_corrupt.png", "class1/d_deleted.jpg")}
    replica = ServerProcess("--config", str(tmp_path / "bad.yaml"))
    try:
        (tmp_path / "bad" / "class1" / "d_deleted.jpg").unlink()  # gone between indexing and reading
        with Client(replica.target) as client:
            batches = list(client.stream_dataset("bad", SPEC, 4, seed=1))
        delivered = [i for b in batches for i in b.indices.tolist()]
        skipped = {i: reason for b in batches for i, reason in b.skipped}
        assert sorted(delivered) == sorted(set(range(len(dataset))) - set(bad))
        assert set(skipped) == set(bad)
        reasons = {bad[i]: reason for i, reason in skipped.items()}
        assert "truncated JPEG" in reasons["class0/a_truncated.jpg"]
        assert "not a JPEG, PNG or WebP image" in reasons["class0/b_text.jpg"]
        assert "corrupt png" in reasons["class1/c_corrupt.png"]
        assert "file not found" in reasons["class1/d_deleted.jpg"]
        assert replica.metric("augserve_dataset_skipped_total", dataset="bad") == 4
        request = pb.StreamDatasetRequest(dataset="bad", batch_size=1, pipeline=pb.PipelineRef(spec=json.dumps(SPEC)))
        singles = list(rpc.AugmentationStub(replica.channel).StreamDataset(request, timeout=120))
        empty = [m for m in singles if not m.HasField("batch")]  # a batch of one bad file: nothing but why
        assert sorted(m.skipped[0].index for m in empty) == sorted(bad) and all(not m.sample_indices for m in empty)
        with Client(replica.target) as client:  # the client passes over them
            assert len(list(client.stream_dataset("bad", SPEC, 1))) == len(dataset) - len(bad)
    finally:
        log = replica.stop()
    assert log.count("skipped sample") == 4 and "d_deleted.jpg" in log


def test_memory_does_not_grow_with_the_dataset(tmp_path):
    write_imagenet_like_jpegs(tmp_path / "small", count=96, classes=4, seed=7)
    write_imagenet_like_jpegs(tmp_path / "big", count=384, classes=4, seed=8)  # ~250 MB of pixels once decoded
    (tmp_path / "sizes.yaml").write_text(f"datasets:\n  small: {{type: folder, path: {tmp_path / 'small'}}}\n"
                                         f"  big: {{type: folder, path: {tmp_path / 'big'}}}\n")
    window = 64  # MiB of decoded images kept for other streams of the same files (shared decode)
    replica = ServerProcess("--config", str(tmp_path / "sizes.yaml"), "--decoded-window-bytes", str(window << 20))
    rss = {}
    try:
        with Client(replica.target) as client:
            for name, size in (("small", 96), ("big", 384)):
                assert sum(len(batch.indices) for batch in client.stream_dataset(name, SPEC, 16, seed=0)) == size
                rss[name] = _rss_mib(replica.process.pid)
    finally:
        replica.stop()
    # holding the big epoch's images, decoded, would add ~185 MB more than the small one's; the window holds at most
    # its bound of them
    assert rss["big"] - rss["small"] < 60 + window, rss


def _rss_mib(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


@pytest.mark.parametrize("entry, words", [
    ({"type": "folder", "path": "/no/such/folder"}, ["dataset d:", "is not a folder"]),
    ({"type": "folder", "path": "{empty}"}, ["dataset d:", "no class subfolders"]),
    ({"type": "shards", "shards": "{root}/shards/nope-{{000..001}}.tar"}, ["dataset d:", "no file"]),
    ({"type": "shards", "shards": "{unlabelled}"}, ["dataset d:", "no label member"]),
    ({"type": "folder", "path": "{root}/folder", "size": 224}, ["datasets.d: unknown field 'size'",
                                                                "the pipeline's first step fixes the size"]),
    ({"type": "tfrecord", "path": "x"}, ["datasets.d.type: expected one of folder, shards, arrays"]),
])
def test_config_errors_stop_start_up_naming_the_dataset(root, tmp_path, entry, words):
    import tarfile

    (tmp_path / "empty").mkdir()
    with tarfile.open(tmp_path / "unlabelled.tar", "w") as archive:
        archive.add(root / "folder" / "class0" / "extra.png", arcname="0001.png")
    values = {"root": root, "empty": tmp_path / "empty", "unlabelled": tmp_path / "unlabelled.tar"}
    entry = {key: value.format(**values) if isinstance(value, str) else value for key, value in entry.items()}
    with pytest.raises(ValueError) as error:
        load_datasets({"d": entry})
    for word in words:
        assert word in str(error.value), str(error.value)


def test_shard_indexes_are_cached_outside_the_data_and_redone_when_a_shard_changes(root, tmp_path, monkeypatch):
    import shutil
    import tarfile

    def no_tar_reading(*args, **kwargs):
        raise tarfile.ReadError("read the tar headers again")

    for shard in sorted((root / "shards").glob("train-*.tar")):
        shutil.copy(shard, tmp_path / shard.name)
    pattern = str(tmp_path / "train-*.tar")
    monkeypatch.setenv("AUGSERVE_CACHE_DIR", str(tmp_path / "cache"))
    first = index_shards("s", pattern)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3 and not list(tmp_path.glob("*.npy"))
    monkeypatch.setattr(tarfile, "open", no_tar_reading)
    again = index_shards("s", pattern)  # a second start-up reads no tar header
    assert np.array_equal(again.offsets, first.offsets) and torch.equal(again.labels, first.labels)
    os.utime(tmp_path / "train-000001.tar", ns=(0, 0))  # the shard changed: its index is made anew
    with pytest.raises(ValueError, match="train-000001.tar: not a readable tar file"):
        index_shards("s", pattern)
    monkeypatch.setenv("AUGSERVE_CACHE_DIR", "")  # empty: no cache at all
    with pytest.raises(ValueError, match="train-000000.tar: not a readable tar file"):
        index_shards("s", pattern)


def test_the_index_command_describes_and_checks_a_config(root, tmp_path):
    text = describe(str(root / "serve.yaml"), check=True)
    assert "folder: 30 samples, 3 classes, image, image files" in text
    assert "shards: 30 samples, 3 classes, image, 3 tar shard(s)" in text
    assert text.count("header check: 30 readable, 0 bad") == 2
    assert "digits: built in" in text


def test_a_replica_killed_mid_epoch_loses_no_sample_of_a_sharded_dataset(tmp_path):
    import signal

    paths = write_imagenet_like_jpegs(tmp_path / "folder", count=512, classes=4, seed=9)
    paths[100].write_text("not an image")  # skipped wherever the epoch is served
    bad = index_folder("train", str(tmp_path / "folder")).paths.index(str(paths[100]))
    pack_folder(str(tmp_path / "folder"), str(tmp_path / "shards"), samples_per_shard=128, prefix="train")
    (tmp_path / "serve.yaml").write_text(
        f"datasets:\n  train: {{type: shards, shards: '{tmp_path}/shards/train-{{000000..000003}}.tar'}}\n")
    spec = [{"op": "random_resized_crop", "size": 224}, {"op": "hflip"}]  # 150 KB a sample: the stream lasts
    replicas = ServerProcess.several(2, "--config", str(tmp_path / "serve.yaml"))
    try:
        with Client([r.target for r in replicas], timeout=60) as client:
            reference = {b.batch_index: b for b in client.stream_dataset("train", spec, 16, seed=4, epoch=2)}
            before = [r.metric("augserve_requests_total", method="StreamDataset") for r in replicas]
            delivered = []
            for batch in client.stream_dataset("train", spec, 16, seed=4, epoch=2):
                delivered.append(batch)
                if len(delivered) == 5:
                    streaming = [r for r, b in zip(replicas, before)
                                 if r.metric("augserve_requests_total", method="StreamDataset") > b]
                    streaming[0].process.send_signal(signal.SIGKILL)
                    streaming[0].process.wait(timeout=10)
            survivor = next(r for r in replicas if r.process.poll() is None)
            served = survivor.metric("augserve_requests_total", method="StreamDataset")
            resumed = served > before[replicas.index(survivor)]
        assert resumed  # the stream was cut mid-epoch and the other replica served the rest
    finally:
        for replica in replicas:
            replica.stop()
    assert [b.batch_index for b in delivered] == sorted(reference) == list(range(32))
    indices = sorted(i for b in delivered for i in b.indices.tolist())
    assert indices == [i for i in range(512) if i != bad]
    assert [i for b in delivered for i, _ in b.skipped] == [bad]
    for batch in delivered:
        assert np.array_equal(batch.x, reference[batch.batch_index].x)
