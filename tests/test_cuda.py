"""The CUDA paths, where a GPU is present: same draws as the CPU, close values, the server and trainer on it.

These run on a machine with a CUDA device and are skipped elsewhere (the CPU paths they mirror
are covered by the rest of the suite).
"""

import pytest
import torch
from torch import nn

from augserve import Pipeline
from augserve.random import Draw, SampleRng
from augserve.tools.gpu_check import single_image_ops
from test_golden_replay import OP_SPECS

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


def assert_same_draws(cpu_params: list[dict], gpu_params: list[dict], where: str) -> None:
    """Every drawn field of every step: integers and flags exactly, floats within 1e-4 (the same uniforms
    through float32 math that may round differently on the device)."""
    assert [p["op"] for p in cpu_params] == [p["op"] for p in gpu_params], where
    for cpu_step, gpu_step in zip(cpu_params, gpu_params):
        assert set(cpu_step) == set(gpu_step), where
        for field, value in cpu_step.items():
            other = gpu_step[field]
            if not isinstance(value, torch.Tensor):
                assert value == other, (where, field)
            elif value.is_floating_point():
                assert torch.allclose(value, other.cpu(), atol=1e-4, rtol=1e-4), (where, field)
            else:
                assert torch.equal(value, other.cpu()), (where, field)


IMAGE_OPS = single_image_ops()  # policies chain them: their draws and batch invariance are checked below
# Grey levels a single op may differ by on the device: resampling and blending round differently there.
LEVELS = {"posterize": 0, "invert": 0, "hflip": 0, "vflip": 0, "center_crop": 0, "random_crop": 0,
          "grayscale": 1, "solarize": 1, "equalize": 1, "autocontrast": 1}
DEFAULT_LEVELS = 2


@pytest.mark.parametrize("op", IMAGE_OPS)
def test_each_image_op_draws_the_same_and_differs_by_a_bounded_level(photo_batch, op):
    pipe = Pipeline.from_spec([{"op": op, **OP_SPECS[op]}])
    cpu = pipe(photo_batch, seed=11)
    gpu = pipe(photo_batch.to(CUDA), seed=11)
    assert_same_draws(cpu.params, gpu.params, op)
    assert gpu.x.is_cuda and gpu.x.shape == cpu.x.shape and gpu.x.dtype == cpu.x.dtype
    levels = (cpu.x.float() - gpu.x.cpu().float()).abs() * (255 if cpu.x.is_floating_point() else 1)
    bound = LEVELS.get(op, DEFAULT_LEVELS)
    assert (levels > bound).float().mean() <= 0.001, f"{op}: {levels.max():.0f} levels at most"


@pytest.mark.parametrize("preset", ["imagenet-randaug", "imagenet-trivial", "cifar-autoaug", "rand-m9-n2-mstd0.5"])
def test_image_policies_draw_the_same_and_merged_batches_equal_each_alone_on_the_device(photo_batch, preset):
    pipe = Pipeline.from_spec(preset)
    cpu = pipe(photo_batch, seed=11)
    gpu = pipe(photo_batch.to(CUDA), seed=11)
    assert_same_draws(cpu.params, gpu.params, preset)
    keys = torch.arange(16, device=CUDA) * 7 + 3
    merged = pipe(photo_batch.to(CUDA), seed=11, keys=keys).x
    first = pipe(photo_batch[:5].to(CUDA), seed=11, keys=keys[:5]).x
    rest = pipe(photo_batch[5:].to(CUDA), seed=11, keys=keys[5:]).x
    assert torch.equal(merged, torch.cat([first, rest])), "a sample changed with the batch it came in"


def test_nvjpeg_never_overwrites_memory_that_queued_kernels_still_read():
    """pytorch/vision#9606's pattern: queue slow work and one reduction per tensor, free the tensors while the
    reductions wait, decode; a decoder writing into the freed blocks changes what the reductions return."""
    from image_files import image_kinds

    from augserve.encoded import EncodedBatch

    kinds = image_kinds()
    files = [data for name, data in sorted(kinds.items()) if name.startswith("jpeg") and "exif" not in name] * 4
    batch = EncodedBatch(files, device=CUDA)
    shapes = [(3, image.header.height, image.header.width) for image in batch.images]
    corrupted = 0
    for _ in range(40):
        held = [torch.full(shape, 7, dtype=torch.uint8, device=CUDA) for shape in shapes]
        torch.cuda._sleep(50_000_000)  # ~25 ms of queued work before the reductions
        sums = [tensor.sum(dtype=torch.int64) for tensor in held]
        del held
        decoded = batch.decode_jpegs_on_device()
        assert len(decoded) == len(files)
        corrupted += any(int(total) != 7 * torch.Size(shape).numel() for total, shape in zip(sums, shapes))
    assert corrupted == 0, f"{corrupted} of 40 rounds read memory the decoder overwrote"


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


@pytest.mark.parametrize("spec", ["imagenet-eval", [{"op": "random_resized_crop", "size": [64, 48]}, {"op": "hflip"}],
                                  [{"op": "resize", "size": 40}, {"op": "posterize", "bits": 3, "p": 1.0}]])
def test_resizes_give_the_cpus_bits_on_the_device(photo_batch, spec):
    """The exact resize: a (seed, key) is the same sample on a CPU and a GPU, even where posterize would turn one
    grey level of a float resize into 32."""
    pipe = Pipeline.from_spec(spec)
    assert torch.equal(pipe(photo_batch.to(CUDA), seed=4).x.cpu(), pipe(photo_batch, seed=4).x)


def test_a_captured_graph_replays_each_calls_own_result(photo_batch):
    from augserve.server.graphs import CudaGraphs
    from augserve.server.metrics import Metrics

    metrics = Metrics(CUDA)
    graphs = CudaGraphs(CUDA, metrics)
    pipe = Pipeline.from_spec("imagenet-randaug")
    labels = torch.arange(16) % 4
    for seed in (1, 2, 3):
        x = photo_batch.roll(seed, 0).to(CUDA)
        out_x, out_labels = graphs.run(pipe, pipe.device_call(x, labels, seed=seed, num_classes=4))
        eager = pipe(x, labels, seed=seed, num_classes=4)
        assert torch.equal(out_x, eager.x) and torch.equal(out_labels, eager.labels), seed
    assert metrics.registry.get_sample_value("augserve_cuda_graphs_total", {"outcome": "captured"}) == 1
    assert metrics.registry.get_sample_value("augserve_cuda_graphs_total", {"outcome": "replayed"}) == 3
