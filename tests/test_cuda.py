"""The CUDA paths, where a GPU is present: same draws as the CPU, close values, the server and trainer on it.

These run on a machine with a CUDA device and are skipped elsewhere (the CPU paths they mirror
are covered by the rest of the suite).
"""

import pytest
import torch
from torch import nn

from augserve import Pipeline
from augserve.random import Draw, SampleRng

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


class D(Draw):
    A = 0
    B = 1
    C = 2


def test_the_sampler_gives_the_same_bits_on_the_device():
    keys = torch.arange(1000, 1512)
    cpu = SampleRng(7, keys).fork(3)
    gpu = SampleRng(7, keys.to(CUDA)).fork(3)
    assert torch.equal(cpu.bits(D.A, n=5), gpu.bits(D.A, n=5).cpu())
    assert torch.equal(cpu.index(D.B, 14), gpu.index(D.B, 14).cpu())
    assert torch.allclose(cpu.normal(D.C, n=3), gpu.normal(D.C, n=3).cpu(), atol=1e-5)


@pytest.mark.parametrize("preset", ["imagenet-randaug", "imagenet-trivial", "cifar-autoaug"])
def test_image_policies_draw_the_same_ops_and_agree_in_value(photo_batch, preset):
    pipe = Pipeline.from_spec(preset)
    cpu = pipe(photo_batch, seed=11)
    gpu = pipe(photo_batch.to(CUDA), seed=11)
    assert [p["op"] for p in cpu.params] == [p["op"] for p in gpu.params]
    if cpu.x.dtype == torch.uint8:
        differs = (cpu.x.int() - gpu.x.cpu().int()).abs() > 1
        assert differs.float().mean() < 0.01  # interpolation rounding only
    else:
        assert torch.allclose(cpu.x, gpu.x.cpu(), atol=2e-2)


@pytest.mark.parametrize("spec, shape", [
    ("specaugment-LD", (8, 80, 400)),
    ("timeseries-um", (8, 3, 500)),
    ([{"op": "log_mel"}, {"op": "time_mask", "T": 20}], (4, 16000)),
])
def test_sequence_pipelines_agree_across_devices(spec, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    pipe = Pipeline.from_spec(spec)
    cpu, gpu = pipe(x, seed=3).x, pipe(x.to(CUDA), seed=3).x.cpu()
    assert torch.allclose(cpu, gpu, atol=1e-3, rtol=1e-4)


def test_mixing_on_the_device_keeps_labels_honest(photo_batch):
    out = Pipeline.from_spec([{"op": "mix"}])(photo_batch.to(CUDA), torch.arange(16, device=CUDA) % 4,
                                                num_classes=4)
    assert out.x.is_cuda and torch.allclose(out.labels.sum(1), torch.ones(16, device=CUDA))


def test_the_server_runs_on_the_device_and_answers_like_in_process(photo_batch):
    from augserve.client import Client
    from server_harness import RunningServer

    server = RunningServer(device="cuda", metrics_port=0)
    try:
        with Client(server.target) as client:
            assert client.server_info()["device"].startswith("cuda")
            batch = client.augment(photo_batch, pipeline="rand-m9-n2", seed=2)
        local = Pipeline.from_spec("rand-m9-n2")(photo_batch.to(CUDA), seed=2).x.cpu()
        assert torch.equal(batch.x, local)
    finally:
        server.stop()


def test_trainer_uses_amp_and_pinned_copies_on_the_device():
    from augserve.client import Batch
    from augserve.trainer import Trainer

    moved = Batch(torch.zeros(4, 3), torch.eye(3)[[0, 1, 2, 0]]).to("cuda", non_blocking=True)
    assert moved.x.is_cuda and moved.labels.is_cuda
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    batches = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(4)]
    trainer = Trainer(model, torch.optim.AdamW(model.parameters(), lr=1e-2), progress=False)
    assert trainer.device.type == "cuda" and trainer.amp
    history = trainer.fit(batches, batches, epochs=3)
    assert all(torch.isfinite(torch.tensor(r.train_loss)) for r in history.records)
    assert history.records[-1].train_loss < history.records[0].train_loss


def test_encoded_images_decode_on_the_device_and_agree_with_the_cpu():
    from image_files import image_kinds

    from augserve.encoded import EncodedBatch

    files = list(image_kinds().values())
    spec = [{"op": "random_resized_crop", "size": 64}, {"op": "hflip"}, {"op": "rand_augment", "n": 2, "m": 9}]
    pipe = Pipeline.from_spec(spec)
    cpu = pipe(files, seed=4)
    gpu = pipe(EncodedBatch(files, device=CUDA), seed=4)
    assert gpu.x.is_cuda and gpu.x.shape == cpu.x.shape
    assert torch.equal(cpu.params[0]["box"], gpu.params[0]["box"].cpu())  # boxes come from the headers
    differs = (cpu.x.int() - gpu.x.cpu().int()).abs() > 8
    assert differs.float().mean() < 0.05  # nvJPEG's IDCT and upsampling differ from libjpeg-turbo's in rounding


def test_the_server_decodes_encoded_images_on_the_device():
    from image_files import image_kinds

    from augserve.client import Client
    from augserve.encoded import EncodedBatch
    from server_harness import RunningServer

    files = list(image_kinds().values())
    spec = [{"op": "random_resized_crop", "size": 64}, {"op": "hflip"}]
    server = RunningServer(device="cuda", metrics_port=0)
    try:
        with Client(server.target) as client:
            batch = client.augment(files, pipeline=spec, seed=2)
        local = Pipeline.from_spec(spec)(EncodedBatch(files, device=CUDA), seed=2).x.cpu()
        assert torch.equal(batch.x, local)
    finally:
        server.stop()
