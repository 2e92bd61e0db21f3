"""Waveforms over the wire: valid lengths in and out of Augment and its stream, served audio folders, sound sets."""

import asyncio
import threading

import grpc
import numpy as np
import pytest
import soundfile
import torch

from augserve import Pipeline, framing, wire
from augserve.client import AsyncClient, Client
from augserve.server.audio_datasets import index_audio_folder
from augserve.server.device import DeviceWorker
from augserve.server.graphs import CudaGraphs
from augserve.server.jobs import Job
from augserve.server.metrics import Metrics
from augserve.v1 import augserve_pb2 as pb
from server_harness import RunningServer, request, tensor

T = 4000
SPEED = '[{"op": "speed", "factors": [0.9, 1.1], "p": 0.7}, {"op": "gain"}]'
IDENTITY = [{"op": "gain", "min_gain_db": 0.0, "max_gain_db": 0.0}]


def waves(n, seed=0, length=T):
    return torch.randn(n, length, generator=torch.Generator().manual_seed(seed)) * 0.1


def tone(hz, rate, seconds, channels=1):
    t = np.arange(round(rate * seconds)) / rate
    mono = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes: a 440 Hz tone at 22050 Hz (1.5 s, cropped to 1 s), a 0.5 s FLAC at 16 kHz, a 0.25 s stereo
    OGG at 44.1 kHz, and a file that is not audio."""
    root = tmp_path_factory.mktemp("audio")
    (root / "beep").mkdir()
    (root / "other").mkdir()
    soundfile.write(root / "beep" / "a440.wav", tone(440, 22050, 1.5), 22050)
    soundfile.write(root / "beep" / "short.flac", tone(1000, 16000, 0.5), 16000)
    soundfile.write(root / "other" / "stereo.ogg", tone(300, 44100, 0.25, channels=2), 44100)
    (root / "other" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    return root


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "audio.yaml"
    config.write_text(f"datasets:\n  voices: {{type: audio, path: {folder}, sample_rate: 16000, seconds: 1.0}}\n")
    running = RunningServer(max_batch=64, max_delay_ms=5.0, config=str(config))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stub(server):
    return server.stub()


def test_lengths_round_trip_through_augment_and_its_stream(stub):
    x, lengths = waves(5), [T, 3000, 1, 2500, 4000]
    local = Pipeline.from_spec(SPEED)(x, seed=3, lengths=torch.tensor(lengths))
    response = stub.Augment(request(x, SPEED, seed=3, lengths=lengths), timeout=60)
    assert list(response.lengths) == local.lengths.tolist() and torch.equal(tensor(response.x), local.x)
    mel = Pipeline.from_spec('[{"op": "log_mel"}]')
    answers = list(stub.AugmentStream(iter([request(x, '[{"op": "log_mel"}]', lengths=lengths, request_id=1),
                                            request(x, '[{"op": "log_mel"}]', request_id=2)]), timeout=60))
    assert list(answers[0].lengths) == [n // 160 + 1 for n in lengths]  # frames, centred, hop 160
    assert torch.equal(tensor(answers[0].x), mel(x, lengths=torch.tensor(lengths)).x)
    assert not answers[1].lengths  # none sent, none changed


def test_a_merged_batch_keeps_each_requests_own_lengths():
    running = RunningServer(max_batch=8, max_delay_ms=10_000.0)  # only a full batch runs before the delay
    try:
        stub, answers = running.stub(), {}
        given = {0: [T, 100, 2000, 3999], 1: [50, T, T, 1]}
        registry = running.server.metrics.registry
        threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, stub.Augment(
            request(waves(4, seed=i), SPEED, seed=i, lengths=given[i]), timeout=60))) for i in given]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert registry.get_sample_value("augserve_batch_fill_count") == 1  # one device batch for both
        for i, response in answers.items():
            alone = Pipeline.from_spec(SPEED)(waves(4, seed=i), seed=i, lengths=torch.tensor(given[i]))
            assert list(response.lengths) == alone.lengths.tolist() and torch.equal(tensor(response.x), alone.x)
    finally:
        running.stop()


def test_the_device_workers_graph_path_answers_each_job_its_own_lengths():
    """The path a CUDA server takes (a device-plan call replayed by the graph cache), with a capture that re-runs
    its function on replay standing in for CUDA's."""
    def capture(run, device):
        outputs = run()
        return lambda: [static.copy_(fresh) for static, fresh in zip(outputs, run()) if static is not None], outputs

    pipe, cpu = Pipeline.from_spec(SPEED, execution="device"), torch.device("cpu")
    worker = DeviceWorker(cpu, 16, Metrics(cpu))
    worker.graphs = CudaGraphs(cpu, worker.metrics, capture=capture)
    given = [torch.tensor([T, 7, 3000]), torch.tensor([1, 2])]
    jobs = [Job(pipe.check(waves(len(n), seed=i), lengths=n), ("k",), i, None, torch.arange(len(n)), i, None)
            for i, n in enumerate(given)]
    try:
        for _ in range(2):  # captured, then replayed
            for job, n, done in zip(jobs, given, worker._run(jobs, [job.batch for job in jobs])):
                alone = Pipeline.from_spec(SPEED)(waves(len(n), seed=job.seed), seed=job.seed, lengths=n)
                assert torch.equal(done.output.lengths, alone.lengths) and torch.equal(done.output.x, alone.x)
        assert worker.metrics.registry.get_sample_value("augserve_cuda_graphs_total", {"outcome": "replayed"}) == 2
    finally:
        worker.close()


@pytest.mark.parametrize("x, spec, lengths, words", [
    (waves(3), SPEED, [T, T], ["lengths: expected 3 valid lengths", "got 2"]),
    (waves(3), SPEED, [T, 0, T], ["lengths: each must lie in [1, 4000]", "[0, 4000]"]),
    (waves(3), SPEED, [T, T + 1, T], ["lengths: each must lie in [1, 4000]", "[4000, 4001]"]),
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "rand-m9", [8, 8], ["lengths: only waveform batches"]),
    (waves(3), SPEED, [1] * 5000, ["lengths: expected at most 1024 values", "got 5000"]),  # before a tensor
])
def test_bad_lengths_are_refused_naming_the_field_and_the_server_keeps_serving(stub, x, spec, lengths, words):
    with pytest.raises(grpc.RpcError) as error:
        stub.Augment(request(x, spec, lengths=lengths), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert all(word in error.value.details() for word in words), error.value.details()
    assert list(stub.Augment(request(waves(2), SPEED, lengths=[5, 6]), timeout=30).lengths)


def test_the_clients_send_lengths_and_hand_them_back(server):
    x, lengths = waves(3).numpy(), np.array([T, 10, 2000])
    local = Pipeline.from_spec(SPEED)(torch.from_numpy(x), seed=1, lengths=torch.from_numpy(lengths)).lengths
    with Client(server.target) as client:
        batch = client.augment(x, pipeline=SPEED, seed=1, lengths=lengths)
        assert batch.lengths.dtype == np.int64 and batch.lengths.tolist() == local.tolist()
        as_torch = client.augment(torch.from_numpy(x), pipeline=SPEED, seed=1, lengths=torch.from_numpy(lengths))
        assert torch.equal(as_torch.lengths, local)
        mapped = list(client.map([(x, None, [0, 1, 2], lengths)], pipeline=SPEED, seed=1))
        assert mapped[0].lengths.tolist() == local.tolist()
        assert client.augment(x, pipeline=IDENTITY).lengths is None

    async def run():
        async with AsyncClient(server.target) as client:
            return await client.augment(x, pipeline=SPEED, seed=1, lengths=lengths)

    assert asyncio.run(run()).lengths.tolist() == local.tolist()


def test_an_audio_folder_streams_resampled_clips_with_lengths_labels_and_skips(server):
    with Client(server.target) as client:
        info = next(d for d in client.datasets() if d["name"] == "voices")
        assert (info["modality"], list(info["sample_shape"]), info["dtype"], info["size"], info["num_classes"]) == \
            ("waveform", [16000], "float32", 4, 2)
        batches = list(client.stream_dataset("voices", IDENTITY, batch_size=4))
    batch = batches[0]
    by_index = {int(i): (row, int(n), int(label)) for i, row, n, label in
                zip(batch.indices, batch.x, batch.lengths, batch.labels.argmax(1))}
    assert set(by_index) == {0, 1, 3}  # beep/a440.wav, beep/short.flac, other/stereo.ogg (sorted, as listed)
    assert [by_index[i][1:] for i in (0, 1, 3)] == [(16000, 0), (8000, 0), (4000, 1)]
    row = by_index[0][0]
    assert np.argmax(np.abs(np.fft.rfft(row))) == 440  # 1 Hz bins over 16000 samples at 16 kHz
    assert abs(np.abs(row).max() - 0.5) < 0.02
    for row, length, _ in by_index.values():
        assert not row[length:].any()  # zero past each clip
    assert batch.to("cpu").lengths.dtype == torch.int64  # torch for the torch adapters (RemoteDataset)
    assert batch.skipped == [(2, "not a readable WAV/FLAC/OGG file: Format not recognised.")]  # broken.wav


def test_a_served_audio_folder_is_a_sound_set_for_background_noise(stub):
    spec = '[{"op": "background_noise", "sounds": "voices", "min_snr_db": 0, "max_snr_db": 0, "p": 1.0}]'
    x = torch.from_numpy(np.stack([tone(200, 16000, 0.25)] * 3))
    response = stub.Augment(request(x, spec, seed=2, return_params=True), timeout=60)
    added = tensor(response.x) - x
    ratio = added.pow(2).mean(1).sqrt() / x.pow(2).mean(1).sqrt()
    assert torch.allclose(ratio, torch.ones(3), atol=0.05)  # 0 dB: as loud as the signal
    with pytest.raises(grpc.RpcError) as error:
        stub.Augment(request(x, spec.replace('"voices"', '"voice"')), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no sound set named 'voice'" in error.value.details() and "did you mean 'voices'" in error.value.details()


@pytest.mark.parametrize("fields, words", [
    ({"sample_rate": 0}, ["datasets.d.sample_rate: expected an integer in [1000, 384000]"]),
    ({"seconds": -1}, ["datasets.d.seconds: expected a number in (0, 3600]"]),
    ({"max_files": 2}, ["dataset d: more than 2 audio files", "raise datasets.d.max_files"]),
    ({"seconds": 10, "max_seconds": 30}, ["4 files x 10 s = 40 decoded seconds, more than max_seconds 30"]),
    ({"path": "/no/such/folder"}, ["dataset d: /no/such/folder is not a folder"]),
])
def test_audio_folder_limits_stop_start_up_naming_the_field(folder, fields, words):
    with pytest.raises(ValueError) as error:
        index_audio_folder("d", {"type": "audio", "path": str(folder), **fields})
    assert all(word in str(error.value) for word in words), str(error.value)


def test_framed_bytes_carry_lengths_beside_the_tensor_and_read_as_plain_protobuf():
    x = torch.arange(3 * 40000, dtype=torch.float32).view(3, 40000)  # over framing.WORTH: the payload is stripped
    for message, path in ((pb.AugmentRequest(lengths=[3, 1, 2]), framing.X),
                          (pb.AugmentResponse(lengths=[3, 1, 2]), framing.ANSWER_X)):
        raw = framing.Framed(message, {path: wire.describe(message.x, x)}).to_bytes()
        parsed = framing.parse(raw, type(message))
        assert parsed.payload(path) is not None and list(parsed.message.lengths) == [3, 1, 2]
        assert list(type(message).FromString(raw).lengths) == [3, 1, 2]
