"""The Fashion-MNIST experiment's path through the product: a seed's subset written as a served PNG folder, an
``augserve serve`` process serving it, the first served epoch equal bit for bit to the pipeline in process,
and a regularized run fed by ``RemoteDataset``; on small random images made here."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from augserve.client import Client
from augserve.experiments.archives import ImageSplit
from augserve.experiments import fashion
from augserve.experiments.fashion import (FashionRecipe, ServedFolders, development_split, draw_subset,
                                          replays_in_process, run_fashion, run_fashion_development, served_order,
                                          write_png_folder)
from augserve.experiments.ucr import RULE_BELOW, RULE_MAX_LENGTH, RULE_MAX_TRAIN

RECIPE = FashionRecipe(per_class=8, val_per_class=2, development_per_class=4, epochs=2, batch_size=8)


@pytest.fixture(scope="module")
def split() -> ImageSplit:
    generator = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=generator)  # noqa: E731
    labels = lambda n: torch.arange(n) % 3  # noqa: E731
    return ImageSplit("fashion-mnist", TensorDataset(images(60), labels(60)), TensorDataset(images(12), labels(12)), 3)


def test_a_seed_draws_its_own_subset_per_class_with_a_disjoint_validation_split(split):
    fit, val = draw_subset(split, 0, RECIPE)
    assert torch.bincount(fit.tensors[1]).tolist() == [6, 6, 6] and torch.bincount(val.tensors[1]).tolist() == [2] * 3
    assert not rows(split, fit) & rows(split, val)
    again, other = draw_subset(split, 0, RECIPE)[0], draw_subset(split, 1, RECIPE)[0]
    assert torch.equal(again.tensors[0], fit.tensors[0]) and not torch.equal(other.tensors[0], fit.tensors[0])


def rows(split: ImageSplit, data: TensorDataset) -> set[int]:
    """Which training images ``data`` holds (the random images are distinct)."""
    every = split.train.tensors[0].flatten(1)
    return {int((every == row).all(1).nonzero()[0]) for row in data.tensors[0].flatten(1)}


def test_recipes_are_chosen_on_a_development_split_no_seed_draws_and_the_test_set_is_not_read(split, tmp_path,
                                                                                               monkeypatch):
    import json
    import re

    development = development_split(split, RECIPE)
    assert torch.bincount(development.tensors[1]).tolist() == [4, 4, 4]
    for seed in range(4):
        assert not rows(split, development) & set.union(*(rows(split, part) for part in draw_subset(split, seed, RECIPE)))
    monkeypatch.setattr(fashion, "load_fashion_mnist", lambda root=None: split)  # the small images made here
    monkeypatch.setattr(split, "test", None)  # reading the test set would fail the run
    summary = run_fashion_development(out=tmp_path, seeds=1, candidates=("crop-flip-erase", "trivial-mix"),
                                      recipe=RECIPE, progress=False)
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [r["configuration"] for r in runs] == ["plain", "crop-flip-erase", "trivial-mix"]
    for run in runs:
        shown = re.search(rf"^\| {run['configuration']} \| ([\d.]+) \| ([\d.]+) \|", summary, re.M).groups()
        assert shown == (f"{100 * run['development_accuracy']:.1f}",) * 2 and "test_accuracy" not in run
    assert "| trivial-mix |" in summary and '"op": "mix"' in summary and "Highest mean development accuracy" in summary


def test_the_experiment_refuses_configurations_it_cannot_run_before_any_work(tmp_path):
    expected = "configurations plain, then strength S, adaptive or adaptive views"
    for configurations, message in (((("plain", "strength one"), "'strength one': expected strength and a number"),
                                     (("plain", "strength 11"), r"strength: expected a number in \[0, 10\]"),
                                     (("strength 1", "plain"), expected), (("plain", "adaptive gap"), expected),
                                     (("plain",), expected))):
        with pytest.raises(ValueError, match=message):
            fashion.run_fashion_experiments(out=tmp_path, configurations=configurations, root=str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_the_served_folder_replays_the_pipeline_in_process_and_feeds_a_run(split, tmp_path):
    fit, _ = draw_subset(split, 0, RECIPE)
    write_png_folder(fit, tmp_path / "seed0")
    server = ServedFolders({"fashion-0": tmp_path / "seed0"}, tmp_path)
    try:
        with Client(server.target, timeout=120) as client:
            equal, total = replays_in_process(client, "fashion-0", served_order(fit), 0, RECIPE.batch_size)
            info = {d["name"]: d for d in client.datasets()}
        assert (equal, total) == (3, 3)  # 18 images in batches of 8
        assert info["fashion-0"]["size"] == 18 and info["fashion-0"]["num_classes"] == 3
        for configuration in ("adaptive", "adaptive views"):
            run = run_fashion(split, 0, configuration, target=server.target, recipe=RECIPE)
            assert run["epochs"] == RECIPE.epochs and 0.0 <= run["test_accuracy"] <= 1.0
            assert run["mean_strength"] is not None and 0.0 <= run["at_limit"] <= 1.0
            signal = {record.signal_name for record in run["history"].records}
            views = "augmented / clean validation accuracy above chance"
            assert signal == {"gap" if configuration == "adaptive" else views}
    finally:
        server.close()


def test_the_reference_row_trains_plain_on_every_training_image(idx_folder, tmp_path):
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "reference"
    result = subprocess.run([sys.executable, "-m", "augserve.cli", "train", "--dataset", "fashion-mnist-60k",
                             "--epochs", "2", "--out", str(out)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "AUGSERVE_FASHION_MNIST_DIR": str(idx_folder)})
    assert result.returncode == 0, result.stderr
    (run,) = json.loads((out / "results.json").read_text())
    assert (run["configuration"], run["fit_images"], run["epochs"], run["val_accuracy"]) == ("plain", 12, 2, None)
    summary = (out / "summary.md").read_text()
    assert "all 12 training images" in summary and "±" not in summary  # one seed: no spread to report
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = json.loads((out / "learning_curves.json").read_text())["series"]
    assert {s["series"] for s in curves} == {"train (unaugmented batches)", "train (clean)"}  # no validation split


def test_the_ucr_rule_is_what_the_readme_states():
    import pathlib

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"at most {RULE_MAX_TRAIN}" in readme and f"length at most {RULE_MAX_LENGTH}" in readme
    assert f"below {RULE_BELOW:.0%}" in readme
