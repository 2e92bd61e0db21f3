"""Served tables over a real server: SMOTE-balanced epochs with equal class counts whose rows replay, the
request's tabular pipeline on them, column statistics by the table's name, and bad tables refused clearly."""

import csv

import numpy as np
import pytest
import torch

from augserve import Pipeline, table_stats
from augserve.client import Client
from augserve.client.errors import FailedPrecondition
from augserve.random import sample_keys
from augserve.server.table_datasets import index_table
from augserve.smote import Smote
from server_harness import RunningServer

COMMON, RARE = 90, 18
IDENTITY = '{"modality": "tabular", "steps": [{"op": "feature_noise", "stats": "loans", "sigma": 0.0}]}'
NOISE = '{"modality": "tabular", "steps": [{"op": "feature_noise", "stats": "loans", "sigma": 0.2, "p": 1.0}]}'


def write_csv(path, rows, header=("income", "age", "region", "debt", "outcome")):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def loan_rows(seed=0):
    """Columns income, age, region (north/south/west: categorical), debt; label 'paid' (90 rows) or
    'default' (18)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, count, shift in (("paid", COMMON, 0.0), ("default", RARE, 1.5)):
        for _ in range(count):
            income, age, debt = rng.normal(shift, 1.0, 3)
            rows.append([f"{income:.4f}", f"{age:.4f}", rng.choice(["north", "south", "west"]), f"{debt:.4f}", label])
    return rows


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    loans = write_csv(root / "loans.csv", loan_rows())
    one_row = write_csv(root / "one_row.csv", loan_rows()[:COMMON + 1])  # a single 'default' row
    rng = np.random.default_rng(1)
    np.savez(root / "plain.npz", x=rng.normal(size=(30, 5)).astype(np.float32), y=np.repeat([0, 1, 2], 10))
    return {"loans": loans, "one_row": one_row, "plain": root / "plain.npz"}


@pytest.fixture(scope="module")
def server(tables, tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "tables.yaml"
    config.write_text(
        "datasets:\n"
        f"  loans: {{type: table, path: {tables['loans']}, label: outcome, categorical: [region], balance: smote, "
        "k_neighbors: 5}\n"
        f"  one_row: {{type: table, path: {tables['one_row']}, label: outcome, categorical: [region], "
        "balance: smote}\n"
        f"  plain: {{type: table, path: {tables['plain']}}}\n")
    running = RunningServer(max_batch=256, max_delay_ms=2.0, config=str(config))
    yield running
    running.stop()


def local_smote(tables):
    """The server's SMOTE, rebuilt in process from the same file (one implementation)."""
    table = index_table("loans", {"type": "table", "path": str(tables["loans"]), "label": "outcome",
                                  "categorical": ["region"]}).table()
    return table, Smote(table.x, table.labels, categorical=table.categorical)


def epoch_of(client, name, pipeline, epoch, seed, batch_size=50, **shards):
    rows, labels, indices = [], [], []
    for batch in client.stream_dataset(name, pipeline, batch_size=batch_size, epoch=epoch, seed=seed, **shards):
        rows.append(batch.x)
        labels.append(batch.labels.argmax(1))
        indices.append(batch.indices)
    indices = np.concatenate(indices)
    order = np.argsort(indices)
    return indices[order], np.concatenate(rows)[order], np.concatenate(labels)[order]


def test_a_balanced_table_streams_equal_classes_whose_rows_replay(server, tables):
    table, smote = local_smote(tables)
    classes = table.classes  # sorted names: default, paid
    assert classes == ["default", "paid"] and len(smote) == 2 * COMMON
    with Client(server.target) as client:
        indices, x, labels = epoch_of(client, "loans", IDENTITY, epoch=3, seed=11)
        info = {d["name"]: d for d in client.datasets()}["loans"]
        assert (info["modality"], list(info["sample_shape"]), info["dtype"], info["size"], info["num_classes"]) == \
            ("tabular", [4], "float32", 2 * COMMON, 2)
        assert np.array_equal(indices, np.arange(2 * COMMON))  # the table's rows, then the synthetic ones
        assert np.bincount(labels).tolist() == [COMMON, COMMON]
        expected, expected_labels, synthetic = smote.rows(3, indices, seed=11)
        assert np.array_equal(x, expected) and np.array_equal(labels, expected_labels)
        assert synthetic.sum() == COMMON - RARE and set(np.unique(x[:, 2])) <= {0.0, 1.0, 2.0}  # region codes
        sharded = [epoch_of(client, "loans", IDENTITY, epoch=3, seed=11, batch_size=7, shard_index=k,
                            num_shards=2, even_shards=False) for k in (0, 1)]
        again = np.concatenate([s[1] for s in sharded])[np.argsort(np.concatenate([s[0] for s in sharded]))]
        assert np.array_equal(again, x)  # other shards, other batches: the same rows
        _, next_epoch, _ = epoch_of(client, "loans", IDENTITY, epoch=4, seed=11)
        assert np.array_equal(next_epoch[:len(table.x)], x[:len(table.x)])
        assert not (next_epoch[len(table.x):] == x[len(table.x):]).all(1).any()  # new synthetic rows
        noised_indices, noised, _ = epoch_of(client, "loans", NOISE, epoch=3, seed=11)
    assert table_stats.known("loans")  # declared by the server in this process
    local = Pipeline.from_spec(NOISE)(torch.from_numpy(expected), seed=11, keys=sample_keys(
        torch.from_numpy(noised_indices), 3))
    assert np.array_equal(noised, local.x.numpy()) and not np.array_equal(noised, expected)


def test_statistics_are_the_original_rows_and_plain_tables_stream_as_they_are(server, tables):
    table, _ = local_smote(tables)
    stats = table_stats.get("loans")
    assert torch.allclose(stats.mean, torch.from_numpy(table.x.astype(np.float64).mean(0)).float())
    assert torch.allclose(stats.std, torch.from_numpy(table.x.astype(np.float64).std(0)).float())
    assert stats.categorical == (2,)
    with Client(server.target) as client:
        indices, x, labels = epoch_of(client, "plain", '{"modality": "tabular", "steps": [{"op": "feature_noise", '
                                      '"batch_stats": true, "sigma": 0.0}]}', epoch=0, seed=0, batch_size=8)
    plain = np.load(tables["plain"])
    assert np.array_equal(indices, np.arange(30)) and np.array_equal(x, plain["x"])
    assert np.array_equal(labels, plain["y"])


def test_a_table_smote_cannot_balance_is_refused_naming_the_class(server):
    with Client(server.target) as client, pytest.raises(FailedPrecondition) as error:
        list(client.stream_dataset("one_row", IDENTITY.replace('"loans"', '"one_row"'), batch_size=8))
    assert "dataset 'one_row' cannot be served: dataset one_row: class 'default' has 1 row; SMOTE needs at least 2" \
        in error.value.details, error.value.details


@pytest.mark.parametrize("change, words", [
    (lambda rows: rows, ["datasets.t.label: no column 'label' in the header", "columns: income, age"]),
    (lambda rows: [rows[0], rows[1][:2] + ["north"] + rows[1][3:], *rows[2:]],
     ["line 2, column 'region': 'north' is not a number", "list it in datasets.t.categorical"]),
    (lambda rows: [rows[0], rows[1][:1] + [""] + rows[1][2:], *rows[2:]],
     ["line 2, column 'age': '' is empty (missing values are not supported"]),
    (lambda rows: rows[:3] + [rows[3][:2]], ["line 4 has 2 values, the header 5"]),
])
def test_bad_csvs_are_refused_naming_line_and_column(tmp_path, change, words):
    rows = [["income", "age", "region", "debt", "outcome"]] + [[r[0], r[1], "0", r[3], r[4]] for r in loan_rows()]
    path = write_csv(tmp_path / "t.csv", change(rows)[1:], header=change(rows)[0])
    label = "label" if "label:" in words[0] else "outcome"
    with pytest.raises(ValueError) as error:
        index_table("t", {"type": "table", "path": str(path), "label": label}).table()
    assert all(word in str(error.value) for word in words), str(error.value)


@pytest.mark.parametrize("fields, words", [
    ({"max_bytes": 10}, ["bytes, more than max_bytes 10", "raise datasets.t.max_bytes"]),
    ({"max_columns": 2}, ["4 feature columns, more than max_columns 2"]),
    ({"max_rows": 50}, ["more than max_rows 50 rows"]),
    ({"k_neighbors": 3}, ["datasets.t.k_neighbors: only with balance: smote"]),
    ({"balance": "smote", "kind": "borderline-2"}, ["datasets.t.kind: expected one of regular, borderline-1"]),
    ({"balance": "smote", "sampling_strategy": {"late": 5}}, ["no class 'late' in the table"]),
    ({"categorical": ["colour"]}, ["datasets.t.categorical: no column 'colour'"]),
])
def test_table_limits_and_fields_are_named(tables, fields, words):
    entry = {"type": "table", "path": str(tables["loans"]), "label": "outcome", "categorical": ["region"], **fields}
    with pytest.raises(ValueError) as error:
        source = index_table("t", entry)
        source()
    assert all(word in str(error.value) for word in words), str(error.value)


def test_an_npz_whose_arrays_outgrow_max_bytes_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, x=np.zeros((20_000, 50), dtype=np.float32), y=np.zeros(20_000, dtype=np.int64))
    assert path.stat().st_size < 100_000  # compressed: the file's size would let it through
    with pytest.raises(ValueError, match="holds 20000 x 50 values, 4000000 bytes as float32, more than max_bytes"):
        index_table("t", {"type": "table", "path": str(path), "max_bytes": 1_000_000})
