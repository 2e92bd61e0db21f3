"""`augserve train` as a user runs it, and the same run fed by a server instead of in process."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from augserve.client import Client
from augserve.experiments.fashion import CANDIDATES
from augserve.experiments.digits import run_regularization
from augserve.experiments.series import (RECIPE, REGULARIZERS, Ingredients, across_sets, configurations, ingredients,
                                        verdicts)
from server_harness import RunningServer


def test_train_command_writes_tables_and_learning_curves(tmp_path):
    result = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--epochs", "4", "--seeds", "1",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = (tmp_path / "summary.md").read_text()
    assert "| plain | 0 |" in summary and "| regularized | 0 |" in summary and "IMP ticket" in summary
    assert "80.0%" in summary  # the ticket's sparsity
    assert "digits, 1 seed\n" in summary and "±" not in summary  # one seed: no spread to report
    curves = json.loads((tmp_path / "learning_curves.json").read_text())["series"]
    labels = {(s["run"], s["series"]) for s in curves if s["metric"] == "accuracy %"}
    assert {("regularized", "train (augmented batches)"), ("regularized", "train (clean)"),
            ("plain", "train (unaugmented batches)"), ("plain", "validation (clean)")} <= labels
    clean = next(s for s in curves if s["run"] == "regularized" and s["series"] == "train (clean)"
                 and s["metric"] == "accuracy %")
    kept = clean["values"][clean["epoch"].index(clean["kept_epoch"])]
    shown = re.search(r"^\| regularized \| 0 \| 4 \| ([\d.]+)%", summary, re.M)
    assert float(shown.group(1)) == pytest.approx(kept, abs=0.0051)  # the table's train acc is the curve's dot
    with Image.open(tmp_path / "learning_curves.png") as image:
        assert image.size[0] > 500
    bad = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--train-fraction", "2"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--train-fraction" in bad.stderr


def test_training_fed_by_a_server_equals_training_in_process():
    server = RunningServer(metrics_port=0)
    try:
        with Client(server.target) as client:
            remote = run_regularization(1, regularized=True, epochs=2, train_fraction=0.2, augmenter=client)
    finally:
        server.stop()
    local = run_regularization(1, regularized=True, epochs=2, train_fraction=0.2)
    assert remote["train_loss"] == local["train_loss"] and remote["test_accuracy"] == local["test_accuracy"]


def test_train_on_a_ucr_set_writes_summary_results_and_curves(tmp_path):
    out = tmp_path / "train"
    command = [sys.executable, "-m", "augserve.cli", "train", "--dataset", "gunpoint", "--seeds", "1", "--epochs", "3",
               "--strengths", "0.5,2", "--presets", "timeseries", "--alone", "dropout", "--workers", "1",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = (out / "summary.md").read_text()
    for words in ("## gunpoint", "| plain |", "| strength 0.5 |", "| strength 2 |", "| adaptive", "published FCN",
                  "Ismail Fawaz", "- strength 2 beats plain in", "- best fixed strength", "| preset timeseries |",
                  "- preset timeseries beats plain in", "| adaptive views (mean strength", "- adaptive views",
                  "| dropout alone |", "- dropout alone beats plain in"):
        assert words in summary
    runs = json.loads((out / "results.json").read_text())
    assert {r["configuration"] for r in runs} == {"plain", "strength 0.5", "strength 2", "adaptive", "adaptive views",
                                                  "preset timeseries", "dropout alone"}
    assert all(0 <= r["at_limit"] <= 1 for r in runs if r["configuration"].startswith("adaptive"))
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["epochs"] <= 3 for r in runs)
    assert (out / "gunpoint_curves.png").stat().st_size > 10_000
    # resumed: every run is read back from the journal (one marked there), none run again, the curves drawn anew
    journal = out / "results.journal.jsonl"
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    entries[0]["run"]["test_accuracy"] = 0.123456
    journal.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    (out / "gunpoint_curves.png").unlink()
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads((out / "results.json").read_text())
    assert again[0]["test_accuracy"] == 0.123456 and again[1:] == runs[1:]
    assert (out / "gunpoint_curves.png").stat().st_size > 10_000


def test_verdicts_count_wins_and_ties_seed_by_seed():
    accuracy = {"plain": [0.8, 0.7, 1.0], "strength 0.5": [0.9, 0.7, 1.0], "strength 1": [0.7, 0.6, 0.9],
                "adaptive": [0.85, 0.7, 1.0]}
    runs = [{"seed": seed, "configuration": config, "test_accuracy": value}
            for config, values in accuracy.items() for seed, value in enumerate(values)]
    lines = verdicts(runs, ["plain", "strength 0.5", "strength 1", "adaptive"])
    assert lines[0] == "- strength 0.5 beats plain in 1 of 3 seeds (2 tied), by +3.3 points on average"
    assert lines[1] == "- strength 1 beats plain in 0 of 3 seeds, by -10.0 points on average"
    assert lines[2:] == ["- adaptive beats plain in 1 of 3 seeds (2 tied), by +1.7 points on average",
                         "- best fixed strength: strength 0.5 (86.7%)",
                         "- adaptive 85.0% (-1.7 points from strength 0.5, +11.7 from strength 1)"]
    views = [{"seed": seed, "configuration": "adaptive views", "test_accuracy": value, "at_limit": at_limit}
             for seed, (value, at_limit) in enumerate([(0.895, 0.02), (0.7, 0.3), (0.98, 0.0)])]
    lines = verdicts(runs + views, ["plain", "strength 0.5", "strength 1", "adaptive", "adaptive views"])
    assert lines[3] == "- adaptive views beats plain in 1 of 3 seeds (1 tied), by +2.5 points on average"
    assert lines[6] == ("- adaptive views 85.8% (-0.8 points from strength 0.5), no more than 1 point below it in "
                        "2 of 3 seeds; at a strength limit for at most 30% of a run's epochs that read a signal")
    configs = configurations((0.5, 1.0), adaptive=("adaptive views",))  # --adaptive views: the gap's runs not made
    assert configs == ["plain", "strength 0.5", "strength 1", "adaptive views"]
    without_gap = [r for r in runs + views if r["configuration"] != "adaptive"]
    assert verdicts(without_gap, configs)[2:] == [lines[3], lines[4], lines[6]]


def test_each_regularizer_alone_is_one_part_of_the_recipe_and_the_parts_make_it_whole():
    plain, whole = ingredients("plain", RECIPE), ingredients("strength 0.5", RECIPE)
    assert plain == Ingredients() and whole.strength == 0.5 and ingredients("adaptive views", RECIPE).strength is None
    fields = [field.name for field in dataclasses.fields(Ingredients)]
    parts = {name: ingredients(name + " alone", RECIPE) for name in REGULARIZERS}
    expected = {"augmentation": "pipeline", "mixing": "pipeline", "decay": "weight_decay", "dropout": "dropout",
                "smoothing": "label_smoothing", "early stopping": "early_stopping"}
    for name, part in parts.items():
        assert [field for field in fields if getattr(part, field) != getattr(plain, field)] == [expected[name]]
        if expected[name] != "pipeline":  # at the recipe's own setting
            assert getattr(part, expected[name]) == getattr(whole, expected[name])
    steps = parts["augmentation"].pipeline + parts["mixing"].pipeline
    assert sorted(map(str, steps)) == sorted(map(str, whole.pipeline)) and parts["mixing"].pipeline[0]["op"] == "mix"
    assert {field for part in parts.values() for field in fields if getattr(part, field) != getattr(plain, field)} \
        == {field for field in fields if getattr(whole, field) != getattr(plain, field)} - {"strength"}


def test_across_sets_counts_sets_a_configuration_wins_on_by_its_seed_mean_and_the_seeds_it_wins():
    accuracy = {("a", "plain"): [0.5, 0.7], ("a", "preset timeseries"): [0.7, 0.6],
                ("b", "plain"): [0.9, 0.9], ("b", "preset timeseries"): [0.8, 0.9]}
    runs = [{"dataset": name, "seed": seed, "configuration": config, "test_accuracy": value}
            for (name, config), values in accuracy.items() for seed, value in enumerate(values)]
    lines = across_sets(runs, ["a", "b"], ["plain", "preset timeseries"])
    assert lines[2:] == ["| a | 60.0 | 65.0 |", "| b | 90.0 | 85.0 |", "| **mean difference from plain** | | +0.0 |",
                         "| **sets better than plain** | | 1 of 2 |", "| **seeds better than plain** | | 1 of 4 |"]
    assert verdicts([r for r in runs if r["dataset"] == "a"], ["plain", "preset timeseries"]) == [
        "- preset timeseries beats plain in 1 of 2 seeds, by +5.0 points on average"]


def test_train_refuses_an_unknown_dataset():
    result = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--dataset", "arrowhed"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "arrowhed" in result.stderr and "arrowhead" in result.stderr
    result = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--dataset", "gunpoint", "--strengths",
                             "0.5,11"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "strength: expected a number in [0, 10], got 11.0" in result.stderr
    assert "training runs" not in result.stderr  # refused before any work
    result = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--dataset", "gunpoint", "--presets",
                             "imagenet-randaug"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "'imagenet-randaug' is for image data, not series" in result.stderr
    result = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--dataset", "gunpoint", "--alone",
                             "decay,weights"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--alone: unknown 'weights'" in result.stderr and "early-stopping" in result.stderr
    result = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--dataset", "fashion-mnist", "--strengths",
                             "1,strong"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--strengths: expected numbers separated by commas or none" in result.stderr
    result = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--dataset", "fashion-mnist-dev",
                             "--recipes", "trivial,cutout"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--recipes: unknown 'cutout'" in result.stderr
    assert all(name in result.stderr for name in CANDIDATES)
    result = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--dataset", "fashion-mnist", "--recipes",
                             "trivial,randaug"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "fashion-mnist takes one of crop-flip-erase" in result.stderr
    result = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--dataset", "digits", "--resume"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "digits keeps no journal" in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--help"], capture_output=True,
                               text=True, timeout=300, env={**os.environ, "COLUMNS": "1000"}).stdout  # no wrapping
    assert all(name in help_text for name in CANDIDATES)  # --recipes names what exists
