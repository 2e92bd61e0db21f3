"""Every step draws on the batch's own device: checked on torch's ``meta`` device, which (as CUDA does)
refuses a CPU tensor of more than zero dimensions mixed into its math, so a CPU machine catches what would
break on the first GPU."""

from __future__ import annotations

import pytest
import torch

from augserve import Pipeline
from augserve.modality import Modality
from augserve.ops import mix
from augserve.random import SampleRng
from augserve.steps import STEPS
from augserve.steps.base import Batch
from test_golden_replay import OP_SPECS, _input

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


@pytest.mark.parametrize("op", sorted(STEPS))
def test_each_step_draws_on_the_batchs_device(op, beta_on_the_device):
    pipe = Pipeline.from_spec([{"op": op, **OP_SPECS[op]}])
    (step,) = pipe.steps
    x = _input(pipe.modality or "image")
    x = torch.cat([x, x.flip(0)[:2]])
    modality = Modality(pipe.modality or "image")
    rng = SampleRng(9, KEYS.to(META)).fork(0)
    params = step.draw(rng, Batch(tuple(x.shape), x.dtype, modality, META))
    assert not _params_on(params, META), f"{op}: drawn on another device: {_params_on(params, META)}"


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
