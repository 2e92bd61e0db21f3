"""The tables experiment: the imbalanced split at the recipe's ratio with the test split untouched, 200 stratified
digits rows, SMOTE's epochs in the batches, a tiny run (1 epoch, 2 seeds) writing its files, and the development
run choosing breast-cancer's model by its stated rule on seeds the test never uses."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from augserve.experiments.tables import (ARMS, IMBALANCED, RECIPES, SMALL, imbalanced_split, small_split,
                                         training_batches)

RECIPE = RECIPES[IMBALANCED]


@pytest.mark.parametrize("imbalance", [RECIPE.imbalance, 4])
def test_the_training_split_is_imbalanced_at_the_recipes_ratio_and_the_test_split_is_untouched(imbalance):
    from sklearn.datasets import load_breast_cancer

    recipe = replace(RECIPE, imbalance=imbalance)
    _, y = load_breast_cancer(return_X_y=True)
    split = imbalanced_split(3, recipe)
    counts = np.bincount(split.y_train)
    minority, majority = counts.min(), counts.max()
    assert split.minority == int(np.argmin(counts)) == 0  # malignant
    assert minority == round(majority / imbalance) and abs(majority / minority - imbalance) < 0.5
    test = np.bincount(split.y_test)
    assert len(split.y_test) == int(np.ceil(recipe.test_fraction * len(y)))
    assert abs(test[0] / len(split.y_test) - np.mean(y == 0)) < 0.01  # stratified, no row dropped
    assert majority + test[1] == np.sum(y == 1)  # every benign row is in one split or the other
    assert np.allclose(split.x_train.mean(0), 0, atol=1e-5) and np.allclose(split.x_train.std(0), 1, atol=1e-4)
    other = imbalanced_split(4, recipe)
    assert not np.array_equal(other.x_test, split.x_test)  # the split is drawn by the seed


def test_the_small_data_split_takes_the_recipes_rows_stratified_and_tests_on_the_rest():
    split = small_split(0, replace(RECIPES[SMALL], small_rows=150))
    assert len(split.y_train) == 150 and len(split.y_train) + len(split.y_test) == 1797
    assert np.bincount(split.y_train, minlength=10).min() >= 14


def test_smote_batches_hold_the_epochs_rows_and_fresh_synthetic_rows_each_epoch():
    split = imbalanced_split(0)
    batches = training_batches(split, "smote", seed=0, recipe=RECIPE)
    epochs = [np.concatenate([x.numpy() for x, _ in batches]) for _ in range(2)]
    labels = np.concatenate([y.numpy() for _, y in batches])
    assert len(labels) == batches.size == 2 * np.bincount(split.y_train).max()
    assert np.bincount(labels).tolist() == [batches.size // 2] * 2  # balanced
    assert not np.array_equal(np.sort(epochs[0], 0), np.sort(epochs[1], 0))  # new synthetic rows


def test_a_tiny_run_of_the_command_writes_the_summary_results_and_curves(tmp_path, capsys):
    from augserve.cli import _train, build_parser

    args = build_parser().parse_args(["train", "--dataset", "tables", "--seeds", "2", "--first-seed", "3", "--epochs",
                                      "1", "--workers", "1", "--out", str(tmp_path)])
    assert _train(args) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert summary in capsys.readouterr().out and "--dataset tables --seeds 2 --first-seed 3 --epochs 1" in summary
    results = json.loads((tmp_path / "results.json").read_text())
    expected = sorted((p, s, a) for p in ARMS for s in (3, 4) for a in ARMS[p])
    assert sorted((r["part"], r["seed"], r["arm"]) for r in results["runs"]) == expected
    assert {part: recipe["epochs"] for part, recipe in results["recipes"].items()} == {IMBALANCED: 1, SMALL: 1}
    assert results["recipes"][IMBALANCED]["hidden"] == list(RECIPE.hidden) and isinstance(results["goal_met"], bool)
    assert all(len(r["test_curve"]) == 1 for r in results["runs"])
    for part in (IMBALANCED, SMALL):
        assert (tmp_path / f"{part}_curves.png").stat().st_size > 0
        assert json.loads((tmp_path / f"{part}_curves.json").read_text())["series"]
    assert "**met**" in summary or "**not met**" in summary


def test_the_development_run_chooses_the_best_mean_over_both_arms_on_seeds_the_test_never_uses(tmp_path):
    from augserve.experiments.tables_development import FIRST_SEED, run_table_development

    candidates = {"wide": replace(RECIPE, hidden=(32, 32), epochs=1), "narrow": replace(RECIPE, hidden=(4,), epochs=2)}
    summary = run_table_development(out=tmp_path, seeds=2, workers=1, candidates=candidates, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted((r["candidate"], r["seed"], r["arm"]) for r in results["runs"]) == sorted(
        (c, s, a) for c in candidates for s in (FIRST_SEED, FIRST_SEED + 1) for a in ("plain", "smote"))
    assert FIRST_SEED >= 5  # the test's seeds 0-4 are never a development seed
    mean = {c: np.mean([r["test_balanced_accuracy"] for r in results["runs"] if r["candidate"] == c])
            for c in candidates}
    assert results["chosen"] == max(mean, key=mean.get)
    assert f"| {results['chosen']} (chosen) | " in summary and summary == (tmp_path / "summary.md").read_text()
    assert f"{100 * mean[results['chosen']]:.1f}" in summary


def test_test_seeds_stay_out_of_the_development_seeds_and_tables_dev_keeps_its_own_budget(tmp_path, capsys):
    from augserve.cli import _train, build_parser
    from augserve.experiments.tables import run_table_experiments
    from augserve.experiments.tables_development import run_table_development

    with pytest.raises(ValueError, match="seed 100 is a development seed.*--first-seed 200"):
        run_table_experiments(out=tmp_path, seeds=5, first_seed=98, workers=1, progress=False)
    with pytest.raises(ValueError, match="--seeds from 1 to 100"):
        run_table_development(out=tmp_path, seeds=101, workers=1, progress=False)
    args = build_parser().parse_args(["train", "--dataset", "tables-dev", "--epochs", "3", "--out", str(tmp_path)])
    assert _train(args) == 2 and "drop --epochs" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before any run
