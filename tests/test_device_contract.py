"""Every step draws and applies on the batch's own device, every preset and the encoded first steps too:
checked on torch's ``meta`` device, which (as CUDA does) refuses a CPU tensor of more than zero dimensions
mixed into its math, so a CPU machine catches what would break on the first GPU. Draws run on meta itself;
whole pipelines run on ``stand_in_device.OnDevice`` (CPU values behind meta tensors: off the CPU the device
plan runs, drawing on the host), and must give the bits the CPU gives."""

from __future__ import annotations

import pytest
import torch

from augserve import PRESETS, Pipeline
from augserve.encoded import EncodedBatch
from augserve.modality import Modality
from augserve.ops import mix
from augserve.random import SampleRng
from augserve.steps.base import Batch
from image_files import image_kinds
from augserve.tools.stand_in_device import DeviceTensor, OnDevice
from test_golden_replay import EXTRA_SPECS, OP_SPECS, _input

META = torch.device("meta")
KEYS = torch.tensor([11, 5, 1 << 35, 7, 2, 90])


def _params_on(params, device: torch.device) -> list[str]:
    """Names of drawn per-sample tensors that are not on ``device``."""
    return [name for name, value in params.items() if isinstance(value, torch.Tensor) and value.device != device]


@pytest.fixture
def beta_on_the_device(monkeypatch):
    """Mixing's Beta(alpha, alpha) is the one draw made on the host on purpose (scipy's inverse CDF of B
    uniforms, copied back): meta tensors hold no values to copy, so here it stays on the device."""
    monkeypatch.setattr(mix, "beta_from_uniform", lambda u, alpha: u.to(torch.float64))


@pytest.mark.parametrize("op", sorted(OP_SPECS))  # text steps: tests/test_text_steps.py
def test_each_step_draws_on_the_batchs_device(op, beta_on_the_device):
    pipe = Pipeline.from_spec([{"op": op, **OP_SPECS[op]}])
    (step,) = pipe.steps
    x = _input(pipe.modality or "image")
    x = torch.cat([x, x.flip(0)[:2]])
    modality = Modality(pipe.modality or "image")
    rng = SampleRng(9, KEYS.to(META)).fork(0)
    params = step.draw(rng, Batch(tuple(x.shape), x.dtype, modality, META))
    assert not _params_on(params, META), f"{op}: drawn on another device: {_params_on(params, META)}"


WHOLE_PIPELINES = {**{f"op {op}": [{"op": op, **spec}] for op, spec in OP_SPECS.items()},
                   **{f"preset {name}": name for name in PRESETS}, **EXTRA_SPECS}
# Off the CPU, torchvision resizes uint8 through float (on the CPU: its exact uint8 kernel), one grey level
# apart at most; steps that only move pixels keep that bound, others after a resize (posterize, solarize)
# may widen it, so there only the draws must agree.
RESIZING = {"resize", "random_resized_crop"}
MOVING_PIXELS = RESIZING | {"center_crop", "random_crop", "hflip", "vflip"}


def _on_host(value):
    return value.values if isinstance(value, DeviceTensor) else value


def _same_result(pipe: Pipeline, on_device, on_host, name: str) -> None:
    assert isinstance(on_device.x, DeviceTensor), f"{name}: the result left the device"
    got = _on_host(on_device.x)
    resizes = [step.op for step in pipe.steps if step.op in RESIZING]
    if not resizes:
        assert torch.equal(got, on_host.x), f"{name}: other values on the device"
    elif all(step.op in MOVING_PIXELS for step in pipe.steps):
        assert got.shape == on_host.x.shape and (got.int() - on_host.x.int()).abs().max() <= 1, name
    for drawn, host in zip(on_device.params, on_host.params):
        for field, value in host.items():
            got = _on_host(drawn[field])
            assert (torch.equal(got.cpu(), value) if isinstance(value, torch.Tensor) else got == value), (name, field)


@pytest.mark.parametrize("name", sorted(WHOLE_PIPELINES))
def test_each_pipeline_runs_on_the_device_and_gives_the_hosts_results(name, beta_on_the_device):
    pipe = Pipeline.from_spec(WHOLE_PIPELINES[name])
    x = _input(pipe.modality or "image")
    x = torch.cat([x, x.flip(0)[:2]])
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    on_host = pipe(x, labels, seed=9, keys=KEYS, num_classes=3)
    with OnDevice() as device:
        out = pipe(device.to_device(x), device.to_device(labels), seed=9, keys=device.to_device(KEYS), num_classes=3)
    assert not device.mixed, f"{name}: host tensors in device math: {device.mixed}"
    assert isinstance(out.labels, DeviceTensor) and torch.equal(_on_host(out.labels), on_host.labels)
    _same_result(pipe, out, on_host, name)


class _InThisThread:
    """The decode pool, run in the calling thread: dispatch modes (the stand-in device) are per thread."""

    @staticmethod
    def map(function, items):
        return list(map(function, items))


@pytest.mark.parametrize("spec", ["imagenet-randaug", [{"op": "resize", "size": [40, 48]}],
                                  [{"op": "resize", "size": 36}, {"op": "center_crop", "size": 32}, {"op": "hflip"}]])
def test_encoded_first_steps_run_on_the_device(spec, monkeypatch):
    from augserve.encoded import first_steps

    kinds = image_kinds()
    files = [kinds[name] for name in sorted(kinds)][:6]
    pipe = Pipeline.from_spec(spec)
    on_host = pipe(files, seed=3)
    monkeypatch.setattr(first_steps, "_POOL", _InThisThread())
    with OnDevice() as device:
        out = pipe(EncodedBatch(files).to(META), seed=3)
    assert not device.mixed, f"host tensors in device math: {device.mixed}"
    _same_result(pipe, out, on_host, str(spec))


def test_the_stand_in_device_catches_host_tensors_in_device_math():
    with OnDevice() as device:
        x = device.to_device(torch.ones(2, 3))
        fine = x * torch.tensor(2.0) + x.new_tensor([1.0, 2.0, 3.0])  # 0-dim host scalars are allowed, as on CUDA
        x + torch.ones(3)
        with pytest.raises(TypeError, match="numpy"):
            x.numpy()
    assert torch.equal(fine.values, torch.tensor([[3.0, 4.0, 5.0]] * 2))
    assert device.mixed == ["aten.add.Tensor with host operands of shapes [(3,)]"]


def test_a_device_index_the_host_lacks_is_refused_before_serving(monkeypatch):
    from augserve.server.app import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a host with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == torch.device("cuda:0") and pick_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"cuda:7 requested but this host has 1 CUDA device\(s\), cuda:0 to cuda:0"):
        pick_device("cuda:7")
    for bad in ("tpu", "meta", "cuda:x"):
        with pytest.raises(ValueError, match="--device: expected auto, cpu, cuda or cuda:N"):
            pick_device(bad)
