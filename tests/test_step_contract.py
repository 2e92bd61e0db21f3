"""The contract every registered step keeps, checked over the registry (a new op is covered by adding it).

- replays by (seed, key) in any batch composition (steps that mix samples: the same request
  mixes the same way),
- never writes into its input, and reports only per-sample tensors in its params,
- returns the shape and dtype ``Pipeline.check`` predicted without running it,
- refuses before any work: a batch shape it cannot take fails ``check``, never only at run time,
- draws the same parameters on CUDA as on the CPU (where a GPU is present).
"""

from __future__ import annotations

import pytest
import torch

from augserve import Pipeline
from augserve.steps import STEPS
from test_golden_replay import OP_SPECS, _input

OPS = sorted(OP_SPECS)  # the tensor steps; text steps keep the contract in tests/test_text_steps.py
KEYS = torch.tensor([11, 5, 1 << 35, 7, 2, 90])


def _pipe(op: str) -> Pipeline:
    return Pipeline.from_spec([{"op": op, **OP_SPECS[op]}])


def _batch(pipe: Pipeline) -> torch.Tensor:
    x = _input(pipe.modality or "image")
    return torch.cat([x, x.flip(0)[:2]])  # six samples


def _hostile_shapes(modality: str) -> list[tuple[int, ...]]:
    """Shapes a step may not take: too small, odd channel counts, degenerate lengths."""
    if modality == "image":
        return [(2, 3, 1, 1), (2, 2, 8, 8), (2, 4, 9, 5), (2, 1, 3, 40), (2, 3, 300, 2)]
    if modality == "spectrogram":
        return [(2, 1, 1), (2, 3, 5), (2, 2, 7, 2), (2, 40, 300)]
    if modality == "waveform":
        return [(2, 1), (2, 64), (2, 2, 65), (2, 3000)]
    return [(2, 1, 1), (2, 1, 2), (2, 4, 3), (2, 2, 7), (2, 1, 500)]


@pytest.mark.parametrize("op", OPS)
def test_replays_in_any_batch_composition(op):
    pipe = _pipe(op)
    x = _batch(pipe)
    labels = torch.arange(6) % 3
    full = pipe(x, labels, seed=9, keys=KEYS, num_classes=3)
    again = pipe(x, labels, seed=9, keys=KEYS, num_classes=3)
    assert torch.equal(full.x, again.x)
    if STEPS[op].mixes_samples:
        return  # partners come from the request: its samples replay together, not one by one
    rows = [4, 1, 5]
    part = pipe(x[rows], labels[rows], seed=9, keys=KEYS[rows], num_classes=3)
    assert torch.equal(part.x, full.x[rows])
    if full.labels is not None:
        assert torch.equal(part.labels, full.labels[rows])


@pytest.mark.parametrize("op", OPS)
def test_every_tensor_it_reports_is_per_sample(op):
    """The batcher cuts each merged request's params by rows; a shared tensor would be cut wrongly."""
    pipe = _pipe(op)
    params = pipe(_batch(pipe), torch.arange(6) % 3, seed=3, keys=KEYS, num_classes=3).params[0]
    for name, value in params.items():
        assert not isinstance(value, torch.Tensor) or (value.dim() and value.shape[0] == 6), (op, name)


@pytest.mark.parametrize("op", OPS)
def test_never_writes_its_input(op):
    pipe = _pipe(op)
    x = _batch(pipe)
    before = x.clone()
    pipe(x, torch.arange(6) % 3, seed=1, keys=KEYS, num_classes=3)
    assert torch.equal(x, before)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("out_dtype", [None, "float32"])
def test_returns_what_check_predicted(op, out_dtype):
    pipe = _pipe(op)
    x = _batch(pipe)
    if x.dtype == torch.uint8 or out_dtype is None:
        checked = pipe.check(x, out_dtype)
        out = pipe(x, torch.arange(6) % 3, seed=2, keys=KEYS, num_classes=3, out_dtype=out_dtype)
        assert (tuple(out.x.shape), out.x.dtype) == (checked.shape, checked.dtype)


@pytest.mark.parametrize("op", OPS)
def test_refuses_before_work_or_not_at_all(op):
    pipe = _pipe(op)
    modality = pipe.modality or "image"
    floats = modality != "image"
    for shape in _hostile_shapes(modality):
        x = torch.rand(shape) if floats else torch.randint(0, 256, shape, dtype=torch.uint8)
        try:
            pipe.check(x)
        except ValueError as refusal:
            assert "step 1" in str(refusal) or str(refusal).startswith("x:"), refusal
            continue
        pipe(x, seed=0)  # check let it through: running it must work


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("op", OPS)
def test_draws_the_same_parameters_on_cuda(op):
    pipe = _pipe(op)
    x = _batch(pipe)
    cpu = pipe(x, seed=4, keys=KEYS).params
    gpu = pipe(x.cuda(), seed=4, keys=KEYS.cuda()).params
    for a, b in zip(cpu, gpu):
        for name, value in a.items():
            if isinstance(value, torch.Tensor) and not value.is_floating_point():
                assert torch.equal(value, b[name].cpu()), (op, name)
