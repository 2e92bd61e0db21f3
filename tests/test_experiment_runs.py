"""An experiment's runs: results.json keeps every finished run as it lands, in the runs' order, a failed run
stops the rest without losing what finished, and a resumed command runs only what it had not finished."""

import functools
import json
import time

import pytest
import torch
from torch.utils.data import TensorDataset

from augserve.experiments.archives import ImageSplit
from augserve.experiments.runs import run_all, run_label
from augserve.trainer.monitor import EpochRecord, History


def finish_after(seconds: float, seed: int) -> dict:
    time.sleep(seconds)
    return {"seed": seed, "history": [seed] * 3}


def fail(seed: int) -> dict:
    raise RuntimeError(f"run {seed} failed")


def test_runs_side_by_side_come_back_in_the_calls_order_and_results_drop_the_curves(tmp_path):
    calls = [functools.partial(finish_after, 1.0, 0), functools.partial(finish_after, 0.0, 1)]  # 1 finishes first
    runs = run_all(calls, workers=2, results=tmp_path / "results.json", progress=False)
    assert runs == [{"seed": 0, "history": [0] * 3}, {"seed": 1, "history": [1] * 3}]
    assert json.loads((tmp_path / "results.json").read_text()) == [{"seed": 0}, {"seed": 1}]


def test_an_interrupted_experiment_keeps_the_runs_it_finished(tmp_path):
    results = tmp_path / "results.json"
    calls = [functools.partial(dict, seed=0), functools.partial(dict, seed=1), functools.partial(int, "not a run")]
    with pytest.raises(ValueError, match="not a run"):
        run_all(calls, workers=1, results=results, header={"recipe": "r"}, progress=False)
    assert json.loads(results.read_text()) == {"recipe": "r", "finished": 2, "of": 3,
                                               "runs": [{"seed": 0}, {"seed": 1}]}


def test_a_failed_run_side_by_side_cancels_the_runs_not_started_and_keeps_the_finished(tmp_path):
    results = tmp_path / "results.json"
    calls = [functools.partial(finish_after, 0.0, 0), functools.partial(fail, 1),
             *(functools.partial(finish_after, 2.0, seed) for seed in range(2, 10))]
    with pytest.raises(RuntimeError, match="run 1 failed"):
        run_all(calls, workers=2, results=results, header={}, progress=False)
    kept = json.loads(results.read_text())
    assert {"seed": 0} in kept["runs"] and kept["of"] == 10
    assert kept["finished"] == len(kept["runs"]) < 9  # the queued runs were cancelled, not run


def logged(seed: int, log: str, target: str = "") -> dict:
    """A run that says it ran (a line in ``log``), with a learning curve to carry over."""
    with open(log, "a") as lines:
        lines.write(f"{seed}\n")
    history = History([EpochRecord(epoch=0, train_loss=1.0 / (seed + 1), train_accuracy=0.5, strength=0.25)], True)
    return {"seed": seed, "history": history}


def test_a_resumed_experiment_runs_only_what_it_had_not_finished_and_keeps_the_curves(tmp_path):
    results, log = tmp_path / "results.json", str(tmp_path / "ran.txt")
    first = [functools.partial(logged, 0, log, target="127.0.0.1:1"), functools.partial(logged, 1, log),
             functools.partial(int, "not a run")]
    with pytest.raises(ValueError, match="not a run"):
        run_all(first, workers=1, results=results, header={}, progress=False)
    with open(results.with_name("results.journal.jsonl"), "a") as journal:
        journal.write('{"label": "cut short by a kill')  # the line a kill interrupted
    again = [functools.partial(logged, 0, log, target="127.0.0.1:2"), functools.partial(logged, 1, log),
             functools.partial(logged, 2, log)]  # the server of the second invocation listens elsewhere
    runs = run_all(again, workers=1, results=results, header={}, progress=False, resume=True)
    assert open(log).read().split() == ["0", "1", "2"]  # 0 and 1 were not run again
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert runs[1]["history"].records == logged(1, str(tmp_path / "other.txt"))["history"].records
    assert runs[0]["history"].augmented is True
    assert json.loads(results.read_text())["finished"] == 3
    journal = results.with_name("results.journal.jsonl")
    run_all(again[:2], workers=1, results=results, header={}, progress=False, resume=True)  # fewer seeds
    assert len(journal.read_text().splitlines()) == 3 and open(log).read().split() == ["0", "1", "2"]  # seed 2 kept
    run_all(again[:1], workers=1, results=results, header={}, progress=False)  # without resume: afresh
    assert open(log).read().split() == ["0", "1", "2", "0"]
    assert len(journal.with_name("results.journal.jsonl.previous").read_text().splitlines()) == 3  # kept once


def test_a_run_label_names_the_function_and_what_changes_the_run():
    assert run_label(functools.partial(logged, 0, "a", target="h:1")) == run_label(functools.partial(logged, 0, "a"))
    where = functools.partial(logged, 0, "a", server="h:2", token="secret", threads=2)  # where and how, not what
    assert run_label(where) == run_label(functools.partial(logged, 0, "a")) and "secret" not in run_label(where)
    assert run_label(functools.partial(logged, 0, "a")) != run_label(functools.partial(logged, 1, "a"))
    assert run_label(functools.partial(logged, 0, torch.zeros(3))).endswith("logged(0, Tensor)")  # data: its type
    split = ImageSplit("fashion", TensorDataset(torch.zeros(2)), TensorDataset(torch.zeros(2)), 10)
    assert run_label(functools.partial(logged, 0, split)).endswith(
        "logged(0, ImageSplit(name='fashion', train=TensorDataset, test=TensorDataset, num_classes=10))")  # no address
