"""The device plan: the grouped plan's bits, and on a stand-in CUDA device a fixed, small set of kernels with no
host sync, the same for any batch size, seed and keys (so one CUDA graph can replay a whole call)."""

from __future__ import annotations

import pytest
import torch

from augserve import PRESETS, Pipeline
from augserve.spec import SpecError
from image_files import image_kinds
from augserve.tools.stand_in_device import DeviceTensor, OnDevice
from test_golden_replay import EXTRA_SPECS, OP_SPECS, _input

EVERY_PIPELINE = {**{f"op {op}": [{"op": op, **spec}] for op, spec in OP_SPECS.items()},
                  **{f"preset {name}": name for name in PRESETS}, **EXTRA_SPECS,
                  "timm augmix": "augmix-m3-w3", "timm rand inc": "rand-m9-mstd0.5-inc1",
                  "mix and smoothing": [{"op": "mix"}, {"op": "label_smoothing"}]}
KEYS = torch.tensor([11, 5, 1 << 35, 7, 2, 90])
KERNEL_LIMIT, AUGMIX_LIMIT = 400, 800


def _batch(pipe: Pipeline, size: int = 6) -> torch.Tensor:
    x = _input(pipe.modality or "image")
    return torch.cat([x, x.flip(0)])[:size]


def _same(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b.cpu()), where
    else:
        assert a == b, where


@pytest.mark.parametrize("name", sorted(EVERY_PIPELINE))
def test_the_device_plan_gives_the_grouped_plans_bits(name):
    spec = EVERY_PIPELINE[name]
    grouped, device = Pipeline.from_spec(spec, execution="grouped"), Pipeline.from_spec(spec, execution="device")
    x, labels = _batch(grouped), torch.tensor([0, 1, 2, 1, 0, 2])
    a = grouped(x, labels, seed=9, keys=KEYS, num_classes=3)
    b = device(x, labels, seed=9, keys=KEYS, num_classes=3)
    _same(a.x, b.x, f"{name}: x")
    _same(a.labels, b.labels, f"{name}: labels")
    for step_a, step_b in zip(a.params, b.params, strict=True):
        assert set(step_a) == set(step_b), name
        for field in step_a:
            _same(step_a[field], step_b[field], f"{name}: {step_a['op']}.{field}")


def test_encoded_images_take_the_device_plan_after_their_first_steps():
    files = [image_kinds()[name] for name in sorted(image_kinds())][:5]
    grouped, device = (Pipeline.from_spec("imagenet-randaug", execution=e) for e in ("grouped", "device"))
    assert torch.equal(grouped(files, seed=4).x, device(files, seed=4).x)


def test_a_sample_replays_alone_and_in_any_batch_on_the_device_plan():
    pipe = Pipeline.from_spec("imagenet-randaug", execution="device")
    x = _batch(pipe)
    together = pipe(x, seed=3, keys=KEYS).x
    for i in (0, 4):
        assert torch.equal(pipe(x[i:i + 1], seed=3, keys=KEYS[i:i + 1]).x[0], together[i])


def test_auto_picks_the_plan_by_device_and_unknown_plans_are_refused():
    pipe = Pipeline.from_spec("cifar-randaug")
    assert pipe.plan_for(torch.device("cpu")) == "grouped" and pipe.plan_for(torch.device("cuda")) == "device"
    assert pipe.with_execution("device").plan_for(torch.device("cpu")) == "device"
    assert pipe.at_strength(0.5).execution == "auto"
    assert Pipeline.from_spec("cifar-randaug", execution="device").at_strength(0.5).execution == "device"
    with pytest.raises(SpecError, match="execution: expected one of auto, grouped, device, got 'fast'"):
        Pipeline.from_spec("cifar-randaug", execution="fast")


# On the stand-in device: images small enough for CI (the counts do not depend on the image size; the bench
# counts 240x240 batches), batch sizes 8 and 48.
COUNTED = {**{name: name for name in PRESETS}, "augmix-m3-w3": "augmix-m3-w3",
           "rand-m9-mstd0.5-inc1": "rand-m9-mstd0.5-inc1", "mix + label_smoothing": [{"op": "mix"},
                                                                                      {"op": "label_smoothing"}],
           "tabular": [{"op": "feature_noise", "stats": "replay-table"}, {"op": "feature_mask", "fill": "marginal"},
                       {"op": "feature_mask", "fill": "mean", "batch_stats": True}, {"op": "swap_noise"},
                       {"op": "mix"}, {"op": "label_smoothing"}]}


def _stand_in_input(pipe: Pipeline, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(batch)
    if pipe.modality == "spectrogram":
        return torch.randn(batch, 40, 200, generator=generator)
    if pipe.modality == "timeseries":
        return torch.randn(batch, 3, 100, generator=generator)
    if pipe.modality == "waveform":
        return torch.randn(batch, 4000, generator=generator)
    if pipe.modality == "tabular":
        return torch.randn(batch, 6, generator=generator)  # the columns of the table "replay-table"
    return torch.randint(0, 256, (batch, 3, 40, 48), dtype=torch.uint8, generator=generator)


def count_on_stand_in(spec, batch: int, seed: int = 1, x: torch.Tensor | None = None):
    """A pipeline call as the server makes it (checked on the host, copied, keys and labels on the host), on
    the stand-in CUDA device; the second call is counted (the first fills per-device constants)."""
    pipe = Pipeline.from_spec(spec)
    x = _stand_in_input(pipe, batch) if x is None else x
    labels, keys = torch.arange(batch) % 10, torch.arange(batch) * 7 + seed
    with OnDevice(cuda=True) as device:
        checked = pipe.check(x)
        for _ in range(2):
            device.reset()
            out = pipe(checked.to("cuda"), labels, seed=seed, keys=keys, num_classes=10)
    return device, out


@pytest.mark.parametrize("name", sorted(COUNTED))
def test_a_call_on_a_gpu_is_a_fixed_small_set_of_kernels_without_a_sync(name):
    small, small_out = count_on_stand_in(COUNTED[name], 8)
    large, _ = count_on_stand_in(COUNTED[name], 48)
    other_seed, _ = count_on_stand_in(COUNTED[name], 8, seed=2)
    limit = AUGMIX_LIMIT if "augmix" in name else KERNEL_LIMIT
    assert small.kernels <= limit, f"{name}: {small.kernels} kernels"
    assert large.kernels == small.kernels, f"{name}: {small.kernels} kernels for 8 samples, {large.kernels} for 48"
    assert other_seed.trace == small.trace, f"{name}: another seed runs other kernels"
    assert not small.syncs and not large.syncs, f"{name}: host syncs {small.syncs}"
    assert not small.mixed, f"{name}: host tensors in device math: {small.mixed}"
    # the batch, its labels and every drawn parameter: one copy each
    assert len(small.host_copies) == 3, f"{name}: copies to the device {small.host_copies}"
    assert isinstance(small_out.x, DeviceTensor) and small_out.x.is_cuda


@pytest.mark.parametrize("name", ["imagenet-randaug", "augmix-m3-w3", "specaugment-LD", "timeseries-um",
                                  "mix + label_smoothing", "tabular"])
def test_the_stand_in_gpu_gives_the_cpus_bits(name):
    pipe = Pipeline.from_spec(COUNTED[name])
    x = _stand_in_input(pipe, 8)
    on_cpu = pipe(x, torch.arange(8) % 10, seed=1, keys=torch.arange(8) * 7 + 1, num_classes=10)
    _, on_gpu = count_on_stand_in(COUNTED[name], 8, x=x)
    assert torch.equal(on_gpu.x.values, on_cpu.x) and torch.equal(on_gpu.labels.values, on_cpu.labels)


def test_the_stand_in_counts_kernels_syncs_and_copies():
    with OnDevice(cuda=True) as device:
        x = device.to_device(torch.arange(6.0))
        assert x.is_cuda and x.device == torch.device("cuda", 0)
        y = (x * 2).view(2, 3).sum(dim=1)  # two kernels: the view is free
        bool(y[0] > 1)
        torch.tensor([1.0, 2.0], device="cuda")
        x[x > 2]
    assert device.kernels == 4 and len(device.host_copies) == 1, device.trace  # mul, sum, two gt
    assert device.syncs == ["__bool__", "__getitem__ with a boolean mask"]


def test_float_images_take_the_device_plan_without_a_sync_too():
    x = torch.rand(8, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    small, out = count_on_stand_in("imagenet-randaug", 8, x=x)
    large, _ = count_on_stand_in("imagenet-randaug", 24, x=torch.cat([x, x, x]))
    assert not small.syncs and large.kernels == small.kernels <= KERNEL_LIMIT
    grouped = Pipeline.from_spec("imagenet-randaug", execution="grouped")
    expected = grouped(x, torch.arange(8) % 10, seed=1, keys=torch.arange(8) * 7 + 1, num_classes=10).x
    assert torch.equal(out.x.values, expected)


def test_packing_round_trips_every_tensor_in_one_buffer():
    from augserve.ops.policy_kernels import LayerParams
    from augserve.ops.policies import rand_augment_space
    from augserve.packing import pack
    from augserve.random import SampleRng

    layers = LayerParams(rand_augment_space(31), torch.tensor([[1, 2]]), torch.tensor([[0.5, -1.0]], dtype=torch.float64))
    drawn = [{"a": torch.arange(3, dtype=torch.uint8), "b": (torch.tensor([True, False]), "text"),
              "_layers": layers, "_rng": SampleRng(5, torch.tensor([1, 2])), "none": torch.zeros(0, 4)}]
    packed = pack(drawn)
    copy = packed.host.clone()
    read = packed.read(copy)
    assert packed.host.dtype == torch.uint8 and packed.host.numel() % 16 == 0
    assert torch.equal(read[0]["a"], drawn[0]["a"]) and read[0]["b"][1] == "text"
    assert torch.equal(read[0]["b"][0], drawn[0]["b"][0]) and read[0]["none"].shape == (0, 4)
    assert read[0]["_layers"].space is layers.space and torch.equal(read[0]["_layers"].value, layers.value)
    assert torch.equal(read[0]["_rng"].state, drawn[0]["_rng"].state)
    assert read[0]["a"].untyped_storage().data_ptr() == copy.untyped_storage().data_ptr()  # views of the buffer
    assert packed.signature == pack(drawn).signature
