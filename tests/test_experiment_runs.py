"""An experiment's runs: results.json keeps every finished run as it lands, in the runs' order."""

import functools
import json

import pytest

from augserve.experiments.runs import run_all


def test_runs_side_by_side_come_back_in_order_and_results_drop_the_curves(tmp_path):
    calls = [functools.partial(dict, seed=seed, history=[seed] * 3) for seed in range(4)]
    runs = run_all(calls, workers=2, results=tmp_path / "results.json", progress=False)
    assert runs == [{"seed": seed, "history": [seed] * 3} for seed in range(4)]
    assert json.loads((tmp_path / "results.json").read_text()) == [{"seed": seed} for seed in range(4)]


def test_an_interrupted_experiment_keeps_the_runs_it_finished(tmp_path):
    results = tmp_path / "results.json"
    calls = [functools.partial(dict, seed=0), functools.partial(dict, seed=1), functools.partial(int, "not a run")]
    with pytest.raises(ValueError, match="not a run"):
        run_all(calls, workers=1, results=results, header={"recipe": "r"}, progress=False)
    assert json.loads(results.read_text()) == {"recipe": "r", "finished": 2, "of": 3,
                                               "runs": [{"seed": 0}, {"seed": 1}]}
