"""The device worker's graph cache: one capture per kind of call, replays with each call's own inputs, eager runs
where a capture fails. Here a capture that re-runs its function on replay stands in for CUDA's (a real capture
runs in tests/test_cuda.py where there is a GPU)."""

from __future__ import annotations

import pytest
import torch

from augserve import Pipeline
from augserve.server.app import cuda_graphs
from augserve.server.graphs import CudaGraphs
from augserve.server.metrics import Metrics

CPU = torch.device("cpu")


class Recapture:
    """``capture`` for the CPU: replay runs the function again into the outputs the capture returned, which
    is what a CUDA graph does to its static outputs. ``fail`` makes every capture raise, as an op CUDA cannot
    capture would."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.captures = 0

    def __call__(self, run, device):
        self.captures += 1
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        outputs = run()

        def replay():
            for static, fresh in zip(outputs, run()):
                if static is not None:
                    static.copy_(fresh)
        return replay, outputs


def _batch(size: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (size, 3, 36, 36), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _count(metrics: Metrics, outcome: str) -> float:
    return metrics.registry.get_sample_value("augserve_cuda_graphs_total", {"outcome": outcome}) or 0.0


def _run(graphs: CudaGraphs, pipe: Pipeline, x: torch.Tensor, seed: int):
    labels = torch.arange(len(x)) % 5
    call = pipe.device_call(x, labels, seed=seed, keys=torch.arange(len(x)) + seed, num_classes=5)
    out_x, out_labels = graphs.run(pipe, call)
    return out_x.clone(), out_labels.clone(), pipe(x, labels, seed=seed, keys=torch.arange(len(x)) + seed,
                                                 num_classes=5)


@pytest.mark.parametrize("spec", ["cifar-randaug", [{"op": "random_resized_crop", "size": 24}, {"op": "hflip"},
                                                     {"op": "mix"}, {"op": "label_smoothing"}]])
def test_one_capture_per_kind_of_call_and_every_replay_gives_its_own_calls_result(spec):
    pipe, metrics, capture = Pipeline.from_spec(spec, execution="device"), Metrics(CPU), Recapture()
    graphs = CudaGraphs(CPU, metrics, capture=capture)
    for seed in (1, 2, 3):
        x, labels, expected = _run(graphs, pipe, _batch(6, seed), seed)
        assert torch.equal(x, expected.x) and torch.equal(labels, expected.labels), seed
    assert capture.captures == 1 and _count(metrics, "captured") == 1 and _count(metrics, "replayed") == 3
    x, _, expected = _run(graphs, pipe, _batch(4, 9), 9)  # another batch size: another graph
    assert torch.equal(x, expected.x) and capture.captures == 2


def test_the_cache_keeps_its_capacity_least_recently_used_out_first():
    pipe, metrics, capture = Pipeline.from_spec("cifar-trivial", execution="device"), Metrics(CPU), Recapture()
    graphs = CudaGraphs(CPU, metrics, capacity=2, capture=capture)
    for size in (2, 3, 2, 4, 2, 3):  # 3 falls out when 4 comes in; 2 stays in use
        _run(graphs, pipe, _batch(size, size), size)
    assert capture.captures == 4 and metrics.registry.get_sample_value("augserve_cuda_graphs_cached") == 2


def test_a_call_that_cannot_be_captured_runs_eagerly_after_its_second_try():
    pipe, metrics, capture = Pipeline.from_spec("cifar-randaug", execution="device"), Metrics(CPU), Recapture(True)
    graphs = CudaGraphs(CPU, metrics, capture=capture)
    for seed in (1, 2, 3):
        x, labels, expected = _run(graphs, pipe, _batch(5, seed), seed)
        assert torch.equal(x, expected.x) and torch.equal(labels, expected.labels)
    assert capture.captures == 2 and _count(metrics, "eager") == 3 and _count(metrics, "captured") == 0


def test_a_graph_keeps_the_constants_it_reads_alive(monkeypatch):
    """A graph reads its constants by address: the store evicting them must not free them under it."""
    from augserve import device_constants

    monkeypatch.setattr(device_constants, "CAPACITY", 1)
    pipe, capture = Pipeline.from_spec("cifar-randaug", execution="device"), Recapture()
    graphs = CudaGraphs(CPU, Metrics(CPU), capture=capture)
    _run(graphs, pipe, _batch(5, 1), 1)
    (captured,) = graphs._graphs.values()
    assert len(captured.constants) > 1 and all(isinstance(c, torch.Tensor) for c in captured.constants)


def test_the_flag_turns_graphs_on_for_cuda_only_and_refuses_other_words():
    assert cuda_graphs("on", torch.device("cuda")) and not cuda_graphs("off", torch.device("cuda"))
    assert not cuda_graphs("on", CPU)
    with pytest.raises(ValueError, match="--cuda-graphs: expected on or off, got 'yes'"):
        cuda_graphs("yes", CPU)
