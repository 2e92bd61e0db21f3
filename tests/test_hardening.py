"""Hostile input, drain and CPU contention: the server answers clearly and keeps serving.

Each test reproduces a way the service once broke (a crash, a hang, a lost answer, a wrong
status or metric, an unbounded answer) as an outside client would meet it.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing import shared_memory

import grpc
import pytest
import torch

from augserve.v1 import augserve_pb2 as pb
from augserve.v1 import augserve_pb2_grpc as rpc
from augserve.server.requests import spec_label
from server_harness import RunningServer, ServerProcess, free_port, request, tensor

AUGMENTATION = "/augserve.v1.Augmentation/"
FLIP = '[{"op": "hflip", "p": 1.0}]'


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """The CPU-thread tests change torch's thread count; later tests expect the default."""
    default = torch.get_num_threads()
    yield
    torch.set_num_threads(default)


@pytest.fixture(scope="module")
def server():
    running = RunningServer(max_batch=64, max_delay_ms=5.0, metrics_port=0)
    yield running
    running.stop()


def images(n=4, size=16, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _shared(message, name, nbytes):
    message.x.shm.CopyFrom(pb.SharedMemoryRef(name=name, size=nbytes))
    message.x.data = b""
    return message


def _region(size, tag):
    return shared_memory.SharedMemory(create=True, size=size, name=f"augserve_test_{tag}_{os.getpid()}")


# --- shared memory a same-host process breaks --------------------------------------------------


def test_truncated_regions_are_refused_and_the_server_lives():
    """A truncated region once killed the server with SIGBUS: its mapping kept the old length."""
    replica = ServerProcess()
    x = images()
    source, output = _region(x.nbytes, "in"), _region(x.nbytes, "out")
    try:
        stub = rpc.AugmentationStub(replica.channel)
        source.buf[:x.nbytes] = x.numpy().tobytes()

        def send():
            message = _shared(request(x, "rand-m9"), source.name, x.nbytes)
            message.output_shm.CopyFrom(pb.SharedMemoryRef(name=output.name, size=x.nbytes))
            return stub.Augment(message, timeout=30)

        assert send().x.HasField("shm")  # both regions in use (and cached by the server)
        for region in (source, output):
            os.truncate(f"/dev/shm/{region.name}", 0)
            with pytest.raises(grpc.RpcError) as error:
                send()
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "(0 bytes)" in error.value.details() and region.name in error.value.details()
            os.truncate(f"/dev/shm/{region.name}", x.nbytes)
            source.buf[:x.nbytes] = x.numpy().tobytes()
        assert send().x.HasField("shm")  # restored regions serve again
        assert replica.process.poll() is None
    finally:
        for region in (source, output):
            region.close()
            region.unlink()
        replica.stop()


def test_regions_truncated_while_requests_run_never_crash_the_server():
    """Truncation between the server's size check and its read or write must not kill it either."""
    replica = ServerProcess()
    x = images(16, 64)
    source, output = _region(x.nbytes, "racein"), _region(x.nbytes, "raceout")
    stop = threading.Event()

    def vandal():
        while not stop.is_set():
            for region in (source, output):
                os.truncate(f"/dev/shm/{region.name}", 0)
                os.truncate(f"/dev/shm/{region.name}", x.nbytes)

    thread = threading.Thread(target=vandal, daemon=True)
    try:
        stub = rpc.AugmentationStub(replica.channel)
        thread.start()
        for _ in range(60):
            message = _shared(request(x, "rand-m9"), source.name, x.nbytes)
            message.output_shm.CopyFrom(pb.SharedMemoryRef(name=output.name, size=x.nbytes))
            try:
                stub.Augment(message, timeout=30)
            except grpc.RpcError as error:  # a region too short at the size check; never a dead server
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
        stop.set()
        thread.join(timeout=10)
        assert replica.process.poll() is None, replica.stop()
        assert tensor(stub.Augment(request(x, "rand-m9"), timeout=30).x).shape == x.shape
    finally:
        stop.set()
        for region in (source, output):
            region.close()
            region.unlink()
        replica.stop()


def test_a_huge_shared_memory_tensor_is_refused_before_it_is_read():
    """The server copies a region's bytes: a sparse multi-gigabyte region must not make it allocate them."""
    small = RunningServer(max_message_bytes=1 << 16, metrics_port=0)
    region = _region(4096, "sparse")
    try:
        os.truncate(f"/dev/shm/{region.name}", 8 << 30)  # 8 GiB, sparse: costs nothing until read
        message = request(images(8, 64), "rand-m9")  # 98304 bytes
        _shared(message, region.name, 98304)
        with pytest.raises(grpc.RpcError) as error:
            small.stub().Augment(message, timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "98304 bytes exceed the 65536-byte limit" in error.value.details()
    finally:
        small.stop()
        region.close()
        region.unlink()


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_region_that_is_not_a_regular_file_is_invalid_argument(server, kind):
    path = f"/dev/shm/augserve_test_{kind}_{os.getpid()}"
    os.mkfifo(path) if kind == "fifo" else os.mkdir(path)
    try:
        message = _shared(request(images(), "rand-m9"), os.path.basename(path), images().nbytes)
        with pytest.raises(grpc.RpcError) as error:
            server.stub().Augment(message, timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not a shared-memory region" in error.value.details()
    finally:
        os.unlink(path) if kind == "fifo" else os.rmdir(path)


def test_a_region_replaced_under_the_same_name_is_read_anew(server):
    """The server caches open regions by name; a new file under that name must not serve the old bytes."""
    x, y = images(seed=1), images(seed=2)
    region = _region(x.nbytes, "replaced")
    name = region.name
    try:
        region.buf[:x.nbytes] = x.numpy().tobytes()
        first = server.stub().Augment(_shared(request(x, FLIP), name, x.nbytes), timeout=10)
        region.close()
        region.unlink()
        region = shared_memory.SharedMemory(create=True, size=y.nbytes, name=name)
        region.buf[:y.nbytes] = y.numpy().tobytes()
        second = server.stub().Augment(_shared(request(y, FLIP), name, y.nbytes), timeout=10)
        assert torch.equal(tensor(first.x), x.flip(-1)) and torch.equal(tensor(second.x), y.flip(-1))
    finally:
        region.close()
        region.unlink()


# --- bytes that are not a request ---------------------------------------------------------------


@pytest.mark.parametrize("method,kind", [("Augment", "unary"), ("StreamDataset", "stream"),
                                         ("ListPipelines", "unary"), ("ListDatasets", "unary"),
                                         ("ServerInfo", "unary")])
def test_undecodable_request_bytes_are_invalid_argument(server, method, kind):
    channel = server.channel()
    call = (channel.unary_unary if kind == "unary" else channel.unary_stream)(AUGMENTATION + method)
    with pytest.raises(grpc.RpcError) as error:
        result = call(b"\xff" * 8, timeout=10)
        list(result) if kind == "stream" else result
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert "not a valid augserve.v1." in error.value.details()
    assert server.stub().ServerInfo(pb.ServerInfoRequest(), timeout=10).version


def test_a_stream_with_undecodable_bytes_answers_what_came_before_then_ends(server):
    """[valid, garbage, valid] once gave one answer and then hung until the client's deadline."""
    valid = [request(images(seed=s), "rand-m9", seed=s, request_id=s).SerializeToString() for s in range(2)]
    call = server.channel().stream_stream(AUGMENTATION + "AugmentStream")(iter([valid[0], b"\xff" * 8, valid[1]]),
                                                                          timeout=20)
    answers = []
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        for raw in call:
            answers.append(pb.AugmentResponse.FromString(raw).request_id)
    assert time.monotonic() - started < 15  # ended by the server, not by the deadline
    assert answers == [0]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request 1 of the stream" in error.value.details()


def test_one_bad_request_in_a_stream_keeps_the_answers_before_it(server):
    """[valid 1, int32 2, valid 3] once lost answer 1 as well."""
    bad = request(images(), "rand-m9", request_id=2)
    bad.x.dtype = "int32"
    messages = [request(images(), "rand-m9", request_id=1), bad, request(images(), "rand-m9", request_id=3)]
    call = server.stub().AugmentStream(iter(messages), timeout=30)
    answers = []
    with pytest.raises(grpc.RpcError) as error:
        for answer in call:
            answers.append(answer.request_id)
    assert answers == [1]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request 1 of the stream (request_id 2): x.dtype" in error.value.details()
    trailing = dict(error.value.trailing_metadata())
    assert trailing["augserve-failed-request"] == "1" and trailing["augserve-failed-request-id"] == "2"


# --- limits on what comes back ------------------------------------------------------------------


def test_output_size_is_bounded_before_any_work():
    small = RunningServer(max_pixels=4096, max_message_bytes=1 << 20, metrics_port=0)
    try:
        stub = small.stub()
        with pytest.raises(grpc.RpcError) as error:
            stub.Augment(request(images(1, 8), '[{"op": "resize", "size": [6000, 6000]}]'), timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "--max-pixels" in error.value.details() and "6000x6000" in error.value.details()
        # within the plane limit, but 64 float32 planes of 64x64x3 exceed the 1 MiB message limit
        big = '[{"op": "resize", "size": [64, 64]}, {"op": "normalize", "mean": [0.5], "std": [0.5]}]'
        with pytest.raises(grpc.RpcError) as error:
            stub.Augment(request(images(64, 8), big), timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "--max-message-bytes" in error.value.details() and "3145728 bytes" in error.value.details()
        # 128 tiny images with a million classes: 512 MB of soft labels, once built before the size was known
        one_hot = request(images(128, 1), FLIP, labels=torch.zeros(128, dtype=torch.int64), num_classes=1_000_000)
        with pytest.raises(grpc.RpcError) as error:
            stub.Augment(one_hot, timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "512000000-byte soft labels" in error.value.details() and "fewer classes" in error.value.details()
        assert small.server.metrics.registry.get_sample_value("augserve_batch_fill_count") == 0  # nothing ran
        # params are drawn with the work: an answer they bring over the limit is refused, not half sent
        with pytest.raises(grpc.RpcError) as error:
            stub.Augment(request(torch.zeros(1000, 1, 200), "timeseries-um", return_params=True), timeout=60)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "return_params" in error.value.details()
    finally:
        small.stop()


# --- specs: limits checked while parsing, short refusals ----------------------------------------

LAUGHS = "[" + ", ".join(["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
    f"&a{level} [{', '.join([f'*a{level - 1}'] * 10)}]" for level in range(1, 7)]) + "]"


@pytest.mark.parametrize("spec, expected", [
    (LAUGHS, "YAML aliases"),  # 6 levels once made an 80 MB status message; 7 were OOM-killed
    ("[" * 40 + "]" * 40, "nested more than 32 levels"),
    ("[" * 50_000 + "]" * 50_000, "the limit is 65536"),  # once a RecursionError: INTERNAL
    ('[{"op": "hflip"}' + ', {"op": "hflip"}' * 1_000_000 + "]", "the limit is 65536"),  # once OOM-killed
    (json.dumps([{"op": "hflip"}] * 300), "300 steps; the limit is 256"),
    ('[{"op": ["hflip"]}]', "unknown op ['hflip']"),  # once a TypeError: INTERNAL
    ('[{"op": {"a": 1}}]', "unknown op {'a': 1}"),
    ('[{"op": "hflip", 7: 1}]', "field names are text"),
    (json.dumps([{"op": "hflip", "p": list(range(10_000))}]), "got [0, 1, 2, 3, 4, 5, ...]"),
    ('[{"op": "hflip", "where": 1}]', "unknown field 'where'"),  # once a TypeError from the constructor
    ("[!!float xyz]", "not valid JSON or YAML"),  # a ValueError from YAML's constructor
    ("rand-t" + "x" * 60_000, "unknown op set 'xxxxx"),  # a name, parsed as a timm string, quoted briefly
])
def test_hostile_specs_are_refused_at_once_in_a_few_words(server, spec, expected):
    stub = server.stub()
    message = request(images(2, 8), FLIP)
    if spec.startswith("rand"):
        message.pipeline.name = spec
    else:
        message.pipeline.spec = spec
    with pytest.raises(grpc.RpcError) as error:
        stub.Augment(message, timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert expected in error.value.details() and len(error.value.details()) < 700
    assert tensor(stub.Augment(request(images(2, 8), FLIP), timeout=30).x).shape == (2, 3, 8, 8)


def test_compiled_specs_are_kept_within_their_byte_budget():
    from augserve.server.requests import CompiledSpecs

    kept = CompiledSpecs(max_entries=8, max_chars=2000)
    specs = [json.dumps([{"op": "hflip", "p": index / 100}] * 20) for index in range(10)]  # ~560 characters
    for spec in specs:
        kept.get(spec, 1.0)
    assert len(kept) == 3 and kept.text_chars <= 2000
    assert kept.get(specs[-1], 1.0) is kept.get(specs[-1], 1.0)  # the newest are the ones kept


def test_metrics_name_what_a_request_asked_for_in_few_label_values(server):
    """Inline specs were labelled by their whole text, refused requests "?", even with a preset named."""
    stub = server.stub()
    with pytest.raises(grpc.RpcError):
        stub.Augment(request(torch.zeros(2, 3, 8), "imagenet-randaug"), timeout=30)  # a series, not images
    stub.Augment(request(images(2, 8), FLIP), timeout=30)
    for name in ('rand-DROP TABLE;"{}=,\\ x', "no-such-preset"):  # refused: their text never becomes a label
        with pytest.raises(grpc.RpcError):
            stub.Augment(request(images(2, 8), name), timeout=30)
    pipelines = {sample.labels["pipeline"] for family in server.server.metrics.registry.collect()
                 for sample in family.samples if "pipeline" in sample.labels}
    assert "imagenet-randaug" in pipelines and spec_label(FLIP) in pipelines and FLIP not in pipelines
    assert "(other)" in pipelines and not [name for name in pipelines if "DROP" in name or "no-such" in name]
    assert server.server.metrics.registry.get_sample_value("augserve_requests_total", {
        "method": "Augment", "pipeline": "imagenet-randaug", "status": "INVALID_ARGUMENT"}) >= 1


def test_a_huge_shard_count_is_refused_before_the_epoch_is_laid_out(server):
    """Even shards lay out the padded epoch: 2**32 - 1 shards once meant 32 GiB."""
    start = pb.StreamDatasetRequest(dataset="digits", batch_size=32, num_shards=2**32 - 1, shard_index=5,
                                    even_shards=True)
    start.pipeline.spec = FLIP
    with pytest.raises(grpc.RpcError) as error:
        list(server.stub().StreamDataset(start, timeout=60))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "num_shards: expected 1 to 65536" in \
        error.value.details()


# --- a stream that is never read ----------------------------------------------------------------


def test_a_stream_whose_client_never_reads_stops_being_read(tmp_path):
    """A client that wrote and never read once made the server read 6,000 requests (3.3 GB)."""
    config = tmp_path / "serve.yaml"
    config.write_text("tenants:\n  default: {max_in_flight: 4}\n")
    running = RunningServer(metrics_port=0, config=str(config))
    # a small receive window: the answers the server writes wait in its transport, not in the client
    channel = grpc.insecure_channel(running.target, options=[("grpc.http2.lookahead_bytes", 1 << 16),
                                                             ("grpc.http2.bdp_probe", 0)])
    sent, total = [], 60
    batch = images(8, 64)

    def requests():
        for index in range(total):
            sent.append(index)
            yield request(batch, FLIP, request_id=index)

    def answered():
        return running.server.metrics.registry.get_sample_value(
            "augserve_requests_total", {"method": "AugmentStream", "pipeline": spec_label(FLIP), "status": "OK"}) or 0

    try:
        call = rpc.AugmentationStub(channel).AugmentStream(requests(), timeout=120)
        deadline, settled = time.monotonic() + 60, []
        while time.monotonic() < deadline and len(settled) < 20:  # until the count holds still for 20 looks
            settled = settled + [answered()] if settled and settled[-1] == answered() else [answered()]
            time.sleep(0.05)
        assert 4 <= settled[-1] <= 4 + 2, f"{settled[-1]} answers computed for a client that reads none"
        assert [answer.request_id for answer in call] == list(range(total))  # then reading, every answer in order
    finally:
        channel.close()
        running.stop()


# --- drain --------------------------------------------------------------------------------------


def _answered(replica):
    return replica.metric("augserve_requests_total", method="AugmentStream", status="OK")


def test_drain_answers_every_request_a_stream_sent_before_sigterm():
    """A refused request after SIGTERM once aborted the whole stream, dropping the backlog before it."""
    replica = ServerProcess("--grace-seconds", "60")
    before_sigterm, batch = 14, 32
    sent_all = threading.Event()
    signalled = threading.Event()

    def requests():
        for index in range(before_sigterm):
            yield request(images(batch, 160, seed=index), "imagenet-randaug", seed=index, request_id=index)
        sent_all.set()
        signalled.wait(120)
        for index in range(before_sigterm, before_sigterm + 10):  # after SIGTERM: refused, the stream ends
            time.sleep(0.037)
            yield request(images(batch, 160, seed=index), "imagenet-randaug", seed=index, request_id=index)

    try:
        channel = grpc.insecure_channel(replica.target, options=[("grpc.max_receive_message_length", 1 << 28)])
        call = rpc.AugmentationStub(channel).AugmentStream(requests(), timeout=300)
        answers = []
        failure = []

        def consume():
            try:
                answers.extend(answer.request_id for answer in call)
            except grpc.RpcError as error:
                failure.append(error)

        consumer = threading.Thread(target=consume)
        consumer.start()
        sent_all.wait(120)
        deadline = time.monotonic() + 120  # every one of them received: answered or queued on the server
        while time.monotonic() < deadline:
            queued = replica.metric("augserve_queue_samples") / batch
            if _answered(replica) + queued >= before_sigterm:
                break
            time.sleep(0.01)
        backlog = before_sigterm - _answered(replica)
        replica.process.send_signal(signal.SIGTERM)
        signalled.set()
        consumer.join(timeout=240)
        assert backlog >= 2, "the server kept up; no backlog to drain"
        assert answers[:before_sigterm] == list(range(before_sigterm))
        assert failure and failure[0].code() == grpc.StatusCode.UNAVAILABLE and "draining" in failure[0].details()
        assert replica.process.wait(timeout=60) == 0
    finally:
        output = replica.stop()
    assert "never retrieved" not in output and "AbortError" not in output, output


def test_calls_arriving_just_after_sigterm_are_unavailable_never_cancelled():
    """Calls in the first millisecond after SIGTERM were once cancelled by gRPC's own shutdown."""
    replica = ServerProcess()
    codes, signalled = collections.Counter(), threading.Event()
    end = []

    def call_until_the_end():
        stub = rpc.AugmentationStub(grpc.insecure_channel(replica.target))
        signalled.wait(60)
        while time.monotonic() < end[0]:
            try:
                stub.Augment(request(images(1, 8), FLIP), timeout=30)
                codes["OK"] += 1
            except grpc.RpcError as error:
                codes[error.code().name] += 1

    callers = [threading.Thread(target=call_until_the_end) for _ in range(6)]
    try:
        for caller in callers:
            caller.start()
        replica.process.send_signal(signal.SIGTERM)
        end.append(time.monotonic() + 0.5)
        signalled.set()
        for caller in callers:
            caller.join(timeout=120)
        assert replica.process.wait(timeout=60) == 0
    finally:
        replica.stop()
    assert codes["UNAVAILABLE"] > 0 and set(codes) <= {"OK", "UNAVAILABLE"}, codes


def test_several_authorization_headers_are_refused_whatever_their_order():
    guarded = RunningServer(token="s3cret", metrics_port=0)
    try:
        stub = guarded.stub()
        for headers in (("Bearer wrong", "Bearer s3cret"), ("Bearer s3cret", "Bearer wrong"),
                        ("Bearer s3cret", "Bearer s3cret")):
            with pytest.raises(grpc.RpcError) as error:
                stub.Augment(request(images(2, 8), FLIP), timeout=30,
                             metadata=[("authorization", value) for value in headers])
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED and "2 authorization" in error.value.details()
        stub.Augment(request(images(2, 8), FLIP), timeout=30, metadata=[("authorization", "Bearer s3cret")])
    finally:
        guarded.stop()


def test_a_second_server_on_a_busy_port_fails_naming_the_port():
    """A second server once shared the port (SO_REUSEPORT) and took half of the first one's calls."""
    from augserve.server.app import BackgroundServer
    from augserve.server.config import ServerConfig

    port = free_port()
    first = BackgroundServer(ServerConfig(host="127.0.0.1", port=port, metrics_port=0))
    try:
        with pytest.raises(Exception, match=f"--port {port}: cannot listen on 127.0.0.1:{port}"):
            BackgroundServer(ServerConfig(host="127.0.0.1", port=port, metrics_port=0))
        stub = rpc.AugmentationStub(grpc.insecure_channel(first.target))
        assert tensor(stub.Augment(request(images(2, 8), FLIP), timeout=30).x).shape == (2, 3, 8, 8)
    finally:
        first.stop()


# --- CPU threads --------------------------------------------------------------------------------


def test_cgroup_quota_caps_the_threads(tmp_path):
    from augserve.server.cpu import cgroup_cpu_limit

    membership = tmp_path / "cgroup"
    membership.write_text("0::/job\n")
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(str(tmp_path), str(membership)) == 1.5
    (tmp_path / "job" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(str(tmp_path), str(membership)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    membership.write_text("3:cpu,cpuacct:/\n")
    assert cgroup_cpu_limit(str(v1), str(membership)) == 0.5


def test_thread_budget_follows_what_other_processes_leave_free():
    """Only the load beside the worker's own batches counts, decided from enough of them."""
    from augserve.server.cpu import CpuSample, ThreadBudget

    now, state = [0.0], [CpuSample(0.0, 0.0, 0.0)]

    def advance(others_cpus, own_cpus, seconds):  # 4 host CPUs; cumulative CPU seconds
        last = state[0]
        state[0] = CpuSample(last.host_busy + (others_cpus + own_cpus) * seconds, last.host_total + 4 * seconds,
                             last.own + own_cpus * seconds)
        now[0] += seconds

    budget = ThreadBudget(usable=4, host_cpus=4, sample=lambda: state[0], clock=lambda: now[0], interval=0.5)
    for others, expected in ((0.1, 4), (1.0, 3), (2.9, 1), (4.0, 1), (1.6, 2), (0.0, 4)):
        for _ in range(10):  # ten 60 ms batches, then a pause in which others work hard but we do not
            with budget.batch():
                advance(others, own_cpus=budget.current, seconds=0.06)
            advance(4.0, own_cpus=0.0, seconds=0.04)
        assert budget.threads() == expected, (others, budget.current)
    fresh = ThreadBudget(usable=4, host_cpus=4, sample=lambda: state[0], clock=lambda: now[0], interval=0.5)
    with fresh.batch():  # one short batch under full load is too little to decide on
        advance(4.0, own_cpus=1.0, seconds=0.06)
    advance(0.0, 0.0, seconds=1.0)
    assert fresh.threads() == 4
    with ThreadBudget(3, usable=4).batch() as count:
        assert count == 3 == torch.get_num_threads()
    with pytest.raises(ValueError, match="--threads"):
        ThreadBudget(-1)


def test_a_busy_neighbour_takes_threads_away_from_the_pipelines():
    from augserve.server.cpu import ThreadBudget, usable_cpus

    if usable_cpus() < 2:
        pytest.skip("one usable CPU: there is no thread to give back")
    budget = ThreadBudget(interval=0.2)
    work = torch.randn(256, 3, 1000)
    neighbours = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(usable_cpus())]
    try:
        deadline = time.monotonic() + 30
        while budget.threads() == budget.usable and time.monotonic() < deadline:
            with budget.batch():
                for _ in range(20):
                    torch.fft.rfft(work).abs()
        assert budget.threads() < budget.usable
    finally:
        for neighbour in neighbours:
            neighbour.kill()
            neighbour.wait()
