"""An experiment's runs: results.json keeps every finished run as it lands, in the runs' order, and a failed run
stops the rest without losing what finished."""

import functools
import json
import time

import pytest

from augserve.experiments.runs import run_all


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
