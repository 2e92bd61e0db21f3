"""The fortunes experiment: the fixed categories and hash split of Debian's fortune files, the per-seed draw,
and a tiny run writing a summary whose numbers are the results'."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from augserve.experiments.fortunes import (CATEGORIES, FORTUNES_DIR, MAX_WORDS, MIN_WORDS, draw_training, is_test,
                                           load_fortunes)
from augserve.experiments.text import TextRecipe, run_text_experiments
from augserve.text.tokens import eda_words
from conftest import needs_wordnet

pytestmark = pytest.mark.skipif(not (FORTUNES_DIR / CATEGORIES[0]).is_file(),
                                reason="needs Debian's fortune files (apt-get install fortunes)")


def test_the_set_holds_the_fixed_categories_split_by_the_hash_of_each_fortune():
    data = load_fortunes()
    assert data.categories == CATEGORIES == ("computers", "men-women", "politics", "science", "work")
    for side, on_test in ((data.pool, False), (data.test, True)):
        words = [eda_words(text) for text in side.texts]
        assert all(MIN_WORDS <= len(w) <= MAX_WORDS and is_test(w) == on_test for w in words)
        assert len({" ".join(w) for w in words}) == len(side)  # deduplicated
        assert min(side.counts(CATEGORIES).values()) >= (200 if on_test else 290)
    assert not {" ".join(eda_words(t)) for t in data.pool.texts} & {" ".join(eda_words(t)) for t in data.test.texts}
    assert "%" not in data.test.texts and "\b" not in "".join(data.pool.texts)


def test_each_seed_draws_its_sentences_per_category_from_the_pool_only():
    pool = load_fortunes().pool
    first, again, other = draw_training(pool, 100, 3), draw_training(pool, 100, 3), draw_training(pool, 100, 4)
    assert len(first) == 500 and set(np.bincount(first.labels)) == {100}
    assert first.texts == again.texts and first.texts != other.texts
    assert set(first.texts) <= set(pool.texts)


def test_missing_fortune_files_say_which_package_to_install(tmp_path):
    with pytest.raises(RuntimeError, match="apt-get install fortunes"):
        load_fortunes(str(tmp_path))


@needs_wordnet  # its eda arm reads WordNet
def test_a_tiny_run_writes_a_summary_that_agrees_with_its_results(tmp_path):
    recipe = TextRecipe(per_class=8, epochs=2, embedding=8, filters=4, batch_size=8)
    summary = run_text_experiments(out=tmp_path, seeds=1, workers=1, recipe=recipe, arms=("plain", "eda"),
                                   progress=False)
    assert summary == (tmp_path / "summary.md").read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(r["seed"], r["arm"]) for r in results["runs"]] == [(0, "plain"), (0, "eda")]
    assert all(r["train_sentences"] == 40 and len(r["test_curve"]) == 2 for r in results["runs"])
    assert results["dataset"]["categories"] == list(CATEGORIES) and isinstance(results["goal_met"], bool)
    row = re.search(r"^\| 0 \| ([\d.]+) \| ([\d.]+) \| ([+-][\d.]+) \|$", summary, re.M)
    plain, eda = (100 * r["test_accuracy"] for r in results["runs"])
    assert [float(v) for v in row.groups()] == [round(plain, 1), round(eda, 1), round(eda - plain, 1)]
    assert f"by {eda - plain:+.1f} points" in summary
    curves = json.loads((tmp_path / "learning_curves.json").read_text())["series"]
    test = {s["run"]: s["values"][-1] for s in curves if s["series"].startswith("test")}
    assert test == pytest.approx({"plain": plain, "eda": eda}, abs=1e-4)  # the table's, to the 4 decimals kept
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_train_command_runs_the_fortunes_experiment(monkeypatch, capsys):
    from augserve.cli import _train, build_parser

    asked = {}
    monkeypatch.setattr("augserve.experiments.text.run_text_experiments",
                        lambda **kwargs: asked.update(kwargs) or "summary")
    args = build_parser().parse_args(["train", "--dataset", "fortunes", "--epochs", "3", "--out", "somewhere"])
    assert _train(args) == 0 and "summary" in capsys.readouterr().out
    assert asked == {"out": "somewhere", "seeds": 5, "epochs": 3, "workers": 2, "resume": False}
