"""The gRPC service end to end on loopback: round trips, batching, refusals, health, metrics, auth."""

import json
import math
import os
import signal
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from augserve import Pipeline
from augserve.v1 import augserve_pb2 as pb
from server_harness import RunningServer, ServerProcess, make_certificates, request, tensor


@pytest.fixture(scope="module")
def server():
    running = RunningServer(max_batch=64, max_delay_ms=30.0, max_samples=256)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stub(server):
    return server.stub()


def fill(running):
    """(sum, count) of the batch-fill histogram: device batches run and how full they were."""
    registry = running.server.metrics.registry
    return (registry.get_sample_value("augserve_batch_fill_sum") or 0.0,
            registry.get_sample_value("augserve_batch_fill_count") or 0.0)


def images(n=8, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_augment_equals_the_in_process_pipeline(stub):
    x, y = images(), torch.arange(8) % 4
    keys = list(range(100, 108))
    response = stub.Augment(request(x, "cifar-randaug", seed=7, keys=keys, labels=y, num_classes=4,
                                    return_params=True), timeout=60)
    local = Pipeline.from_spec("cifar-randaug")(x, y, seed=7, keys=torch.tensor(keys), num_classes=4)
    assert torch.equal(tensor(response.x), local.x)
    assert torch.equal(tensor(response.labels), local.labels)
    params = json.loads(response.params_json)
    assert [p["op"] for p in params] == [p["op"] for p in local.params]
    assert response.server_seconds > 0


def test_mixing_over_the_wire_keeps_labels_honest(stub):
    x, y = images(9), torch.arange(9)
    response = stub.Augment(request(x, '[{"op": "mix"}, {"op": "label_smoothing", "epsilon": 0.1}]', seed=3,
                                    labels=y, num_classes=9), timeout=60)
    labels = tensor(response.labels)
    assert torch.allclose(labels.sum(1), torch.ones(9), atol=1e-6)
    assert response.label_smoothing == pytest.approx(0.1)


def test_bidirectional_stream_answers_in_order(stub):
    batches = [images(4, seed=s) for s in range(6)]
    requests = [request(b, "rand-m9-n2", seed=s, request_id=s) for s, b in enumerate(batches)]
    responses = list(stub.AugmentStream(iter(requests), timeout=60))
    assert [r.request_id for r in responses] == list(range(6))
    for s, (b, r) in enumerate(zip(batches, responses)):
        assert torch.equal(tensor(r.x), Pipeline.from_spec("rand-m9-n2")(b, seed=s).x)


def test_one_streams_requests_each_run_as_sent(server, stub):
    """A stream's in-flight window merged into one batch would answer nothing until all of it ran."""
    before = fill(server)
    requests = [request(images(16, seed=s), "rand-m9-n2", seed=s, request_id=s) for s in range(4)]
    started = time.monotonic()
    responses = list(stub.AugmentStream(iter(requests), timeout=60))
    fill_sum, batches = (after - start for after, start in zip(fill(server), before))
    assert [r.request_id for r in responses] == [0, 1, 2, 3]
    assert batches == 4 and fill_sum == pytest.approx(4 * 16 / 64)  # 4 x 16 would have filled one batch of 64
    assert time.monotonic() - started < 30


def test_concurrent_requests_are_merged_but_never_mixed(server, stub):
    pipe = Pipeline.from_spec("rand-m9-n2")
    before = fill(server)
    results, errors = {}, []

    def call(i):
        try:
            results[i] = stub.Augment(request(images(8, seed=i), "rand-m9-n2", seed=i), timeout=60)
        except grpc.RpcError as error:
            errors.append(error)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for i, response in results.items():
        assert torch.equal(tensor(response.x), pipe(images(8, seed=i), seed=i).x)  # own seed, own samples
    fill_sum, batches = (after - start for after, start in zip(fill(server), before))
    assert batches < 8  # some of the 8 requests shared a device batch
    assert fill_sum * 64 / batches > 8


def test_dataset_stream_shards_cover_the_epoch_exactly_once(stub):
    seen = []
    for shard in range(3):
        message = pb.StreamDatasetRequest(dataset="digits", batch_size=100, epoch=2, seed=5,
                                          shard_index=shard, num_shards=3)
        message.pipeline.spec = '[{"op": "random_affine", "degrees": 10}]'
        for batch in stub.StreamDataset(message, timeout=120):
            x = tensor(batch.batch.x)
            assert x.shape[1:] == (1, 8, 8) and x.shape[0] == len(batch.sample_indices)
            assert tensor(batch.batch.labels).shape == (x.shape[0], 10) and not batch.padding
            seen.extend(batch.sample_indices)
    assert sorted(seen) == list(range(1797))


@pytest.mark.parametrize("shards, batch_size", [(4, 64), (8, 32), (3, 200)])
def test_even_shards_give_every_rank_the_same_batches_padded_as_distributed_sampler(stub, shards, batch_size):
    """Uneven shards (1,797 digits: 8 x 32 gave 8/7/7/7/7/7/7/7 batches) leave a data-parallel rank waiting at the
    end of every epoch. Even shards pad the epoch with its own first samples, as DistributedSampler pads: fewer
    than ``shards`` of them, each flagged on the wire."""
    from augserve.server.datasets import epoch_order

    per_shard, seen, padded = [], [], []
    for shard in range(shards):
        message = pb.StreamDatasetRequest(dataset="digits", batch_size=batch_size, epoch=1, seed=2, shard_index=shard,
                                          num_shards=shards, even_shards=True)
        message.pipeline.name = "rand-m9-n2"
        batches = list(stub.StreamDataset(message, timeout=120))
        assert {b.num_batches for b in batches} == {len(batches)}
        assert all(len(b.padding) in (0, len(b.sample_indices)) for b in batches)  # empty: none is padding
        per_shard.append((len(batches), sum(len(b.sample_indices) for b in batches)))
        for b in batches:
            flags = list(b.padding) or [False] * len(b.sample_indices)
            seen += [i for i, pad in zip(b.sample_indices, flags) if not pad]
            padded += [i for i, pad in zip(b.sample_indices, flags) if pad]
    samples = math.ceil(1797 / shards)
    assert set(per_shard) == {(math.ceil(samples / batch_size), samples)}
    assert sorted(seen) == list(range(1797))  # the rest: the epoch exactly once
    assert sorted(padded) == sorted(epoch_order(1797, 2, 1)[:samples * shards - 1797].tolist())  # its first samples


def test_a_served_batch_is_built_from_tensors_not_parsed_from_a_message(stub, monkeypatch):
    """The served-dataset path hands the batch it read straight to the job: no request message is written and
    parsed back in the process (which would cost a copy of every batch)."""
    import augserve.wire

    def parsed(*args, **kwargs):
        raise AssertionError("a served batch went through wire.to_torch")

    monkeypatch.setattr(augserve.wire, "to_torch", parsed)
    message = pb.StreamDatasetRequest(dataset="digits", batch_size=64, seed=1)
    message.pipeline.name = "rand-m9-n2"
    answers = list(stub.StreamDataset(message, timeout=120))
    assert len(answers) == 29 and sum(len(a.sample_indices) for a in answers) == 1797
    with pytest.raises(grpc.RpcError) as refused:  # the client's own requests are still parsed: the patch bites
        stub.Augment(request(images(2)), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INTERNAL and "AssertionError" in refused.value.details()


def test_dataset_stream_keeps_the_next_batch_in_flight():
    """Each batch once waited out max_delay_ms when it was the only one queued; the next one's arrival sends it.

    With a 10 s delay, waiting would take 57 x 10 s; sending on arrival finishes in a few seconds even on a busy host.
    """
    patient = RunningServer(max_batch=64, max_delay_ms=10_000.0, metrics_port=0)
    try:
        message = pb.StreamDatasetRequest(dataset="digits", batch_size=32, seed=1)
        message.pipeline.name = "rand-m9-n2"
        started = time.monotonic()
        assert len(list(patient.stub().StreamDataset(message, timeout=300))) == 57
        elapsed = time.monotonic() - started
        assert fill(patient)[1] == 57  # one device batch per dataset batch
        assert elapsed < 10 * 10, f"{elapsed:.2f} s for 57 batches: some waited out max_delay_ms"
    finally:
        patient.stop()


def test_dataset_stream_resumes_and_replays(stub):
    def stream(start):
        message = pb.StreamDatasetRequest(dataset="digits", batch_size=256, epoch=0, seed=1, start_batch=start)
        message.pipeline.name = "rand-m9-n2"
        return list(stub.StreamDataset(message, timeout=120))

    full, resumed = stream(0), stream(5)
    assert [b.batch_index for b in resumed] == [5, 6, 7] and len(full) == 8  # 1797 digits in 8 batches
    for a, b in zip(full[5:], resumed):
        assert a.sample_indices == b.sample_indices and a.batch.x.data == b.batch.x.data


MALFORMED = [
    (lambda: request(images(2), "no-such-pipeline"), "pipeline"),
    (lambda: request(images(2), '[{"op": "rand_augment", "m": 99}]'), "'m'"),
    (lambda: _with(request(images(2)), lambda r: setattr(r.x, "data", r.x.data[:-1])), "x.data"),
    (lambda: _with(request(images(2)), lambda r: setattr(r.x, "dtype", "complex64")), "x.dtype"),
    (lambda: request(images(2), labels=torch.arange(3), num_classes=5), "labels"),
    (lambda: request(images(2), labels=torch.tensor([0, 7]), num_classes=5), "class index 7"),
    (lambda: request(images(2), keys=[1]), "keys"),
    (lambda: request(torch.full((2, 3, 8, 8), float("nan")), "rand-m9"), "expected finite values"),
    (lambda: request(images(2), out_dtype="int8"), "out_dtype"),
    (lambda: request(torch.zeros(2, 8), "rand-m9"), "x: expected shape"),
    (lambda: _in_shared_memory(request(images(2)), "../etc/passwd"), "x.shm.name"),
    (lambda: _in_shared_memory(request(images(2)), "augserve_nobody_made_this"), "no shared-memory region"),
    (lambda: _with(request(images(2)), lambda r: r.output_shm.CopyFrom(pb.SharedMemoryRef(name="x/y"))),
     "output_shm.name"),
    (lambda: _with(request(images(2), labels=torch.tensor([0, 1]), num_classes=2),
                   lambda r: r.labels.shm.CopyFrom(pb.SharedMemoryRef(name="augserve_a"))), "labels.shm"),
]


def _in_shared_memory(message, name, size=None):
    """The request's x moved to a shared-memory reference (the bytes dropped)."""
    message.x.shm.CopyFrom(pb.SharedMemoryRef(name=name, size=len(message.x.data) if size is None else size))
    message.x.data = b""
    return message


def _with(message, change):
    change(message)
    return message


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("shared_memory", [None, False], ids=["regions", "messages"])
def test_streams_left_after_their_first_batch_never_crash_the_server(shared_memory):
    """A trainer that stops reading (``break`` out of an epoch) leaves batches in flight on the server; they once
    read the ended call's context, and grpc's ``peer()`` of a released call crashed the process within ~50 such
    streams when its memory was reused (as it is with a client in the same process, as here). Both dataset
    streams: into the client's shared-memory regions (loopback's default) and in messages (shared epochs)."""
    from augserve.client import Client

    running = RunningServer(metrics_port=0)
    try:
        with Client(running.target, timeout=60, shared_memory=shared_memory) as client:
            deadline, left = time.monotonic() + 120, 0
            while left < 150 and time.monotonic() < deadline:
                stream = iter(client.stream_dataset("digits", [{"op": "hflip", "p": 1.0}], 16, seed=left))
                assert next(stream).x.shape[0] == 16
                stream.close()
                left += 1
            assert left >= 50, f"only {left} streams in 120 s: too slow a host to show the crash"
            assert client.server_info()["version"]
    finally:
        running.stop()


def test_malformed_storm_is_refused_clearly_and_the_server_keeps_serving(stub):
    for make, _ in MALFORMED[:2]:  # warm every code path once before measuring
        with pytest.raises(grpc.RpcError):
            stub.Augment(make(), timeout=30)
    baseline = resident_bytes()
    for make, field in MALFORMED:
        for _ in range(50 if field != "class index 7" else 10):
            with pytest.raises(grpc.RpcError) as error:
                stub.Augment(make(), timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
            assert field in error.value.details()
    ok = stub.Augment(request(images(2), "rand-m9"), timeout=30)
    assert tensor(ok.x).shape == (2, 3, 32, 32)
    assert resident_bytes() - baseline < 64 << 20  # ~460 refusals leave no lasting memory behind


def test_input_mistakes_are_refused_before_work_saying_what_to_do(server, stub):
    """Over the wire as in process, a deferred normalize included (the server runs the pipeline without it)."""
    spec = "- {op: random_resized_crop, size: 16}\n- {op: hflip}\n- {op: normalize}\n"
    cases = [
        (images(2)[:, :1], {}, "step 3 (normalize): field 'mean' has 3 values (one per channel) but the batch has "
                               "1 channel: grayscale images? repeat the channel"),
        (images(2)[:, :1], {"defer_normalize": True}, "1 channel: grayscale images? repeat the channel"),
        (images(2).permute(0, 2, 3, 1), {}, "looks like channels-last (N, H, W, C): permute to (N, C, H, W)"),
        (images(2).float(), {"defer_normalize": True}, "read as 0..1 by step 3 (normalize); got values in [0, 255]"),
    ]
    before = fill(server)
    for x, fields, expected in cases:
        with pytest.raises(grpc.RpcError) as error:
            stub.Augment(request(x.contiguous(), spec, **fields), timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and expected in error.value.details(), \
            error.value.details()
    assert fill(server) == before  # no batch ran for any of them


def test_shared_memory_references_are_bounds_checked(stub):
    from multiprocessing import shared_memory

    region = shared_memory.SharedMemory(create=True, size=4096, name="augserve_test_bounds_region")
    try:
        x = images(1, size=8)  # 192 bytes
        region.buf[:x.nbytes] = x.numpy().tobytes()
        ok = stub.Augment(_in_shared_memory(request(x, "rand-m9-n2"), region.name), timeout=30)
        assert torch.equal(tensor(ok.x), Pipeline.from_spec("rand-m9-n2")(x).x)
        for size, offset, expected in ((100, 0, "expected 192 bytes within size 100"),
                                       (192, 4000, "at offset 4000")):
            message = _in_shared_memory(request(x, "rand-m9-n2"), region.name, size)
            message.x.shm.offset = offset
            with pytest.raises(grpc.RpcError) as error:
                stub.Augment(message, timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and expected in error.value.details()
        both = _with(request(x, "rand-m9-n2"), lambda r: r.x.shm.CopyFrom(pb.SharedMemoryRef(name=region.name)))
        with pytest.raises(grpc.RpcError, match="expected data or shm, got both"):
            stub.Augment(both, timeout=30)
    finally:
        region.close()
        region.unlink()


def test_oversized_message_is_resource_exhausted():
    small = RunningServer(max_message_bytes=1 << 16, metrics_port=0)
    try:
        with pytest.raises(grpc.RpcError) as error:
            small.stub().Augment(request(images(8, size=64)), timeout=30)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        small.stop()


def test_full_queue_refuses_at_once():
    tiny = RunningServer(max_queue=8, max_batch=64, max_delay_ms=5_000.0, metrics_port=0)
    try:
        stub = tiny.stub()
        waiting = stub.Augment.future(request(images(7), "rand-m9"), timeout=30)  # waits to be merged
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as error:
            stub.Augment(request(images(2), "rand-m9"), timeout=30)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue full" in error.value.details() and time.monotonic() - started < 4  # not after the 5 s wait
        assert tensor(waiting.result().x).shape[0] == 7
    finally:
        tiny.stop()


def test_expired_deadline_never_reaches_the_device():
    slow = RunningServer(max_batch=64, max_delay_ms=500.0, metrics_port=0)
    try:
        with pytest.raises(grpc.RpcError) as error:
            slow.stub().Augment(request(images(2), "rand-m9"), timeout=0.1)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.6)
        assert fill(slow)[1] == 0  # the expired work was dropped before any device batch
        assert slow.server.batcher.ledger.queued == 0
        registry = slow.server.metrics.registry

        def counted(status):
            return registry.get_sample_value("augserve_requests_total", {"method": "Augment", "pipeline": "rand-m9",
                                                                          "status": status}) or 0.0

        assert counted("DEADLINE_EXCEEDED") == 1 and counted("OK") == 0  # a dropped call once counted as OK
    finally:
        slow.stop()


def test_health_reflection_info_and_metrics(server):
    channel = server.channel()
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answer.list_services_response.service}
    assert "augserve.v1.Augmentation" in names and "grpc.health.v1.Health" in names
    info = server.stub().ServerInfo(pb.ServerInfoRequest(), timeout=10)
    assert info.max_message_bytes == 256 << 20 and info.device == "cpu" and info.max_batch == 64
    pipelines = server.stub().ListPipelines(pb.ListPipelinesRequest(), timeout=10)
    assert "imagenet-randaug" in {p.name for p in pipelines.pipelines}
    datasets = server.stub().ListDatasets(pb.ListDatasetsRequest(), timeout=10)
    assert {"digits", "photos"} <= {d.name for d in datasets.datasets}
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.config.metrics_port}/metrics", timeout=10).read().decode()
    assert "augserve_requests_total" in text and "augserve_batch_fill_bucket" in text


def test_token_auth_on_every_method():
    secured = RunningServer(token="s3cret", metrics_port=0)
    try:
        stub = secured.stub()
        calls = [
            lambda md: stub.Augment(request(images(1)), metadata=md, timeout=10),
            lambda md: list(stub.AugmentStream(iter([request(images(1))]), metadata=md, timeout=10)),
            lambda md: list(stub.StreamDataset(pb.StreamDatasetRequest(dataset="digits", batch_size=4,
                                                                       pipeline=pb.PipelineRef(name="rand-m9")),
                                               metadata=md, timeout=10)),
            lambda md: stub.ListPipelines(pb.ListPipelinesRequest(), metadata=md, timeout=10),
            lambda md: stub.ListDatasets(pb.ListDatasetsRequest(), metadata=md, timeout=10),
            lambda md: stub.ServerInfo(pb.ServerInfoRequest(), metadata=md, timeout=10),
        ]
        for call in calls:
            for metadata in (None, [("authorization", "Bearer wrong")]):
                with pytest.raises(grpc.RpcError) as error:
                    call(metadata)
                assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        good = [("authorization", "Bearer s3cret")]
        assert stub.ServerInfo(pb.ServerInfoRequest(), metadata=good, timeout=10).version
    finally:
        secured.stop()


def test_cancelled_call_frees_its_slots():
    held = RunningServer(max_queue=16, max_batch=64, max_delay_ms=2000.0, metrics_port=0)
    try:
        stub = held.stub()
        call = stub.AugmentStream(iter([request(images(7), "rand-m9")]), timeout=30)
        deadline = time.monotonic() + 5
        while held.server.batcher.ledger.queued != 7 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert held.server.batcher.ledger.queued == 7
        call.cancel()
        deadline = time.monotonic() + 5
        while held.server.batcher.ledger.queued and time.monotonic() < deadline:
            time.sleep(0.02)
        assert held.server.batcher.ledger.queued == 0
        assert tensor(stub.Augment(request(images(9), "rand-m9"), timeout=30).x).shape[0] == 9
    finally:
        held.stop()


def test_tls_refuses_plaintext_clients(tmp_path):
    pki = make_certificates(tmp_path)
    secure = RunningServer(tls_cert=pki["server"], tls_key=pki["server_key"], metrics_port=0)
    try:
        with pytest.raises(grpc.RpcError) as error:
            secure.stub().ServerInfo(pb.ServerInfoRequest(), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        credentials = grpc.ssl_channel_credentials(root_certificates=open(pki["ca"], "rb").read())
        channel = grpc.secure_channel(secure.target, credentials)
        from augserve.v1 import augserve_pb2_grpc as rpc
        assert rpc.AugmentationStub(channel).ServerInfo(pb.ServerInfoRequest(), timeout=10).version
    finally:
        secure.stop()


def test_sigterm_under_load_drains_and_exits():
    replica = ServerProcess("--grace-seconds", "120")  # bounds the drain; a loaded host needs far longer than idle
    try:
        channel = grpc.insecure_channel(replica.target, options=[("grpc.max_receive_message_length", 1 << 28)])
        from augserve.v1 import augserve_pb2_grpc as rpc
        stub = rpc.AugmentationStub(channel)
        in_flight = [stub.Augment.future(request(images(64, size=160, seed=s), "imagenet-randaug"), timeout=120)
                     for s in range(6)]
        time.sleep(0.1)
        replica.process.send_signal(signal.SIGTERM)
        for call in in_flight:
            assert tensor(call.result().x).shape == (64, 3, 224, 224)  # in-flight work finished
        assert replica.process.wait(timeout=120) == 0
        with pytest.raises(grpc.RpcError) as error:
            stub.ServerInfo(pb.ServerInfoRequest(), timeout=2)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        output = replica.stop()
    assert "listening on 127.0.0.1" in output and "stopped" in output


def test_unexpected_errors_are_internal_not_unknown(server, stub, monkeypatch):
    def explode(jobs, inputs):
        raise RuntimeError("boom")

    monkeypatch.setattr(server.server.batcher.device, "_augment", explode)
    with pytest.raises(grpc.RpcError) as error:
        stub.Augment(request(images(2), "rand-m9-n1"), timeout=30)
    assert error.value.code() == grpc.StatusCode.INTERNAL
    assert "RuntimeError" in error.value.details() and "Traceback" not in error.value.details()


def test_folder_and_array_datasets_from_a_config_file(tmp_path, photos):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i, photo in enumerate(photos[:2]):
            Image.fromarray(photo.permute(1, 2, 0).numpy()).save(tmp_path / "pets" / label / f"{i}.png")
    numpy_rng = np.random.default_rng(0)
    np.savez(tmp_path / "series.npz", x=numpy_rng.normal(size=(10, 2, 50)).astype(np.float32),
             y=np.arange(10) % 3)
    config = tmp_path / "datasets.yaml"
    config.write_text(f"datasets:\n  pets: {{type: folder, path: {tmp_path / 'pets'}}}\n"
                      f"  series: {{type: arrays, path: {tmp_path / 'series.npz'}, modality: timeseries}}\n"
                      "pipelines:\n  pets-light: {description: flips only, steps: [{op: hflip, p: 1.0}]}\n")
    served = RunningServer(config=str(config), metrics_port=0)
    try:
        stub = served.stub()
        pets = list(stub.StreamDataset(pb.StreamDatasetRequest(dataset="pets", batch_size=3,
                                                               pipeline=pb.PipelineRef(name="imagenet-randaug")),
                                       timeout=60))
        assert sorted(i for b in pets for i in b.sample_indices) == [0, 1, 2, 3]
        assert tensor(pets[0].batch.x).shape[1:] == (3, 224, 224)
        series = list(stub.StreamDataset(pb.StreamDatasetRequest(
            dataset="series", batch_size=4, pipeline=pb.PipelineRef(name="timeseries-um")), timeout=60))
        assert sum(len(b.sample_indices) for b in series) == 10
        assert tensor(series[0].batch.labels).shape[1] == 3
        with pytest.raises(grpc.RpcError) as error:
            list(stub.StreamDataset(pb.StreamDatasetRequest(dataset="nope", batch_size=4,
                                                            pipeline=pb.PipelineRef(name="rand-m9")), timeout=60))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "pets" in error.value.details()
        listed = {p.name: p for p in stub.ListPipelines(pb.ListPipelinesRequest(), timeout=10).pipelines}
        assert listed["pets-light"].description == "flips only" and "imagenet-randaug" in listed
        x = images(2)
        flipped = stub.Augment(request(x, "pets-light"), timeout=30)
        assert torch.equal(tensor(flipped.x), x.flip(-1))
    finally:
        served.stop()


def test_a_bad_pipeline_in_the_config_file_stops_start_up(tmp_path):
    config = tmp_path / "augserve.yaml"
    config.write_text("pipelines:\n  broken: [{op: rand_augment, m: 99}]\n")
    with pytest.raises(ValueError, match="pipelines.broken: .*'m'"):
        RunningServer(config=str(config), metrics_port=0)
    config.write_text("pipeline: {}\n")
    with pytest.raises(ValueError, match="sections pipelines, datasets"):
        RunningServer(config=str(config), metrics_port=0)
