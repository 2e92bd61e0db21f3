"""Served tables: a CSV (header row, one label column) or an .npz (arrays x and y), rows of float32 features,
optionally balanced by SMOTE afresh every epoch.

A table is checked at start-up without reading its rows: its fields, its size in bytes, its columns (the CSV's
header, the .npz's array headers), so a wrong path, a missing label column or a table past its limits stops
start-up naming it. Its rows are read on first use (a stream, a step that reads its statistics, or the
background read a server starts): a value that is not a number names its line and column, a class SMOTE
cannot raise names the class. Then, once: the per-column statistics (``table_stats``, of the original rows)
and, with ``balance: smote``, each oversampled row's nearest neighbours (``augserve.smote``, on the server's
device).

Without ``balance`` an epoch is the table's N rows. With ``balance: smote`` it is those rows (indices 0..N-1)
followed by the synthetic ones (indices N..M-1, each minority class's block in class order): shuffled,
sharded and batched as any served dataset, each synthetic row made when its batch is read, from the
stream's (seed, epoch) and its index, so each epoch has new rows and any batch replays.
"""

from __future__ import annotations

import csv
import logging
import os
import threading
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from augserve import table_stats
from augserve.labels import MAX_CLASSES
from augserve.server.file_datasets import Samples
from augserve.smote import KINDS, STRATEGIES, Smote
from augserve.spec import shown

log = logging.getLogger("augserve.server")

BALANCES = ("none", "smote")
SMOTE_FIELDS = {"k_neighbors", "m_neighbors", "sampling_strategy", "kind"}
FIELDS = {"type", "path", "label", "categorical", "balance", "max_rows", "max_columns", "max_bytes", *SMOTE_FIELDS}
MAX_ROWS = 10_000_000  # default and most rows per table
MAX_COLUMNS = 4096  # default and most feature columns
MAX_BYTES = 2 << 30  # default and largest file
CSV_CHUNK = 1 << 15  # rows converted at once


def _integer(name: str, entry: dict, key: str, default: int, low: int, high: int) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"datasets.{name}.{key}: expected an integer in [{low}, {high}], got {shown(value)}")
    return value


@dataclass
class Table:
    """A table as read: rows, labels as class codes, the names of its columns and classes."""

    x: np.ndarray  # (N, F) float32
    labels: np.ndarray  # (N,) int64 codes
    columns: list[str]
    classes: list[str]  # class code -> its name in the file
    categorical: tuple[int, ...]


class TableDataset:
    """A table served as a dataset: its rows, or its rows and this epoch's SMOTE rows (``smote``)."""

    modality = "tabular"

    def __init__(self, name: str, table: Table, smote: Smote | None):
        self.name, self.table, self.smote = name, table, smote
        self.x = torch.from_numpy(table.x)  # the original rows: ListDatasets' sample_shape (F,) and dtype
        self.num_classes = len(table.classes)

    def __len__(self) -> int:
        return len(self.smote) if self.smote is not None else len(self.x)

    def read(self, indices: torch.Tensor, max_pixels: int, seed: int = 0, epoch: int = 0) -> Samples:
        """A batch's rows of ``epoch``: original rows gathered, synthetic ones (indices >= N) made now from
        (seed, epoch, index)."""
        if self.smote is None:
            rows = indices.numpy()
            return Samples(torch.from_numpy(self.table.x[rows]), indices, torch.from_numpy(self.table.labels[rows]),
                           [])
        x, y, _ = self.smote.rows(epoch, indices.numpy(), seed=seed)
        return Samples(torch.from_numpy(x), indices, torch.from_numpy(y.astype(np.int64)), [])

    def where(self, index: int) -> str:
        if index < len(self.x):
            return f"row {index}"
        return f"synthetic row {index} (SMOTE, made from the stream's seed and epoch)"

    def describe(self) -> str:
        n, f = self.table.x.shape
        if self.smote is None:
            return f"table of {n} rows x {f} columns"
        counts = ", ".join(f"{self.table.classes[c]}: {k}" for c, k in self.smote.epoch_counts.items())
        return f"table of {n} rows x {f} columns, SMOTE ({self.smote.kind}) to {len(self)} rows an epoch ({counts})"


class TableSource:
    """A table as checked at start-up; calling it reads the rows and finds SMOTE's neighbours (once)."""

    def __init__(self, name: str, entry: dict, path: str, suffix: str, columns: list[str], label: str | None,
                 categorical: tuple[int, ...], limits: tuple[int, int, int], device: torch.device | None):
        self.name, self.entry, self.path, self.suffix = name, entry, path, suffix
        self.columns, self.label, self.categorical = columns, label, categorical
        self.max_rows, self.max_columns, self.max_bytes = limits
        self.device = device
        self._lock = threading.Lock()
        self._table: Table | None = None
        self._loaded: TableDataset | None = None
        self._stats: table_stats.ColumnStats | None = None
        self._failed: str | None = None  # why the rows could not be read
        self._unbalanced: str | None = None  # why SMOTE could not balance them

    @property
    def features(self) -> int:
        return len(self.columns)

    @property
    def ready(self) -> TableDataset | None:
        """The table as served, if it was read already (else None: nothing is read here)."""
        return self._loaded

    def table(self) -> Table:
        with self._lock:
            if self._failed is not None:
                raise ValueError(self._failed)  # said once, read once: the file is not read again
            if self._table is None:
                try:
                    self._table = _read_csv(self) if self.suffix == ".csv" else _read_npz(self)
                except ValueError as error:
                    self._failed = str(error)
                    raise
            return self._table

    def stats(self) -> table_stats.ColumnStats:
        """The per-column statistics of the table's own rows (never of synthetic ones), computed once."""
        table = self.table()
        with self._lock:
            if self._stats is None:
                self._stats = table_stats.of_rows(self.name, table.x, table.categorical)
            return self._stats

    def __call__(self) -> TableDataset:
        table = self.table()
        with self._lock:
            if self._unbalanced is not None:
                raise ValueError(self._unbalanced)
            if self._loaded is None:
                try:
                    self._loaded = TableDataset(self.name, table, self._smote(table))
                except ValueError as error:
                    self._unbalanced = str(error)
                    raise
            return self._loaded

    def _smote(self, table: Table) -> Smote | None:
        entry, name = self.entry, self.name
        if entry.get("balance", "none") != "smote":
            return None
        strategy = entry.get("sampling_strategy", "auto")
        if isinstance(strategy, dict):  # class names as the file spells them, or codes
            codes = {class_name: code for code, class_name in enumerate(table.classes)}
            unknown = [key for key in strategy if str(key) not in codes]
            if unknown:
                raise ValueError(f"datasets.{name}.sampling_strategy: no class {shown(str(unknown[0]))} in the table "
                                 f"(classes: {', '.join(table.classes[:20])})")
            strategy = {codes[str(key)]: value for key, value in strategy.items()}
        try:
            return Smote(table.x, table.labels, k_neighbors=entry.get("k_neighbors", 5),
                         sampling_strategy=strategy, kind=entry.get("kind", "regular"),
                         categorical=table.categorical, m_neighbors=entry.get("m_neighbors", 10),
                         device=self.device, name=f"dataset {name}", class_names=table.classes)
        except ValueError as error:  # a field's own ("kind: ..."), or the table's ("dataset t: class ...")
            message = str(error)
            raise ValueError(message if message.startswith("dataset ") else f"datasets.{name}.{message}") from None


def index_table(name: str, entry: dict, device: torch.device | None = None) -> TableSource:
    """A table's fields, file size and columns checked; no row read."""
    max_rows = _integer(name, entry, "max_rows", MAX_ROWS, 1, MAX_ROWS)
    max_columns = _integer(name, entry, "max_columns", MAX_COLUMNS, 1, MAX_COLUMNS)
    max_bytes = _integer(name, entry, "max_bytes", MAX_BYTES, 1, MAX_BYTES)
    balance = entry.get("balance", "none")
    if balance not in BALANCES:
        raise ValueError(f"datasets.{name}.balance: expected one of {', '.join(BALANCES)}, got {shown(balance)}")
    if balance != "smote" and SMOTE_FIELDS & set(entry):
        field = sorted(SMOTE_FIELDS & set(entry))[0]
        raise ValueError(f"datasets.{name}.{field}: only with balance: smote")
    if entry.get("kind", "regular") not in KINDS:
        raise ValueError(f"datasets.{name}.kind: expected one of {', '.join(KINDS)}, got {shown(entry.get('kind'))}")
    for key in ("k_neighbors", "m_neighbors"):
        _integer(name, entry, key, 5, 1, 1000)
    strategy = entry.get("sampling_strategy", "auto")
    if not (strategy in STRATEGIES or isinstance(strategy, dict) or
            (isinstance(strategy, (int, float)) and not isinstance(strategy, bool))):
        raise ValueError(f"datasets.{name}.sampling_strategy: expected one of {', '.join(STRATEGIES)}, a ratio in "
                         f"(0, 1] or a map class -> rows, got {shown(strategy)}")
    path = entry.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(f"datasets.{name}.path: expected the path of a .csv or .npz file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".csv", ".npz"):
        raise ValueError(f"datasets.{name}.path: expected a .csv or .npz file, got {shown(path)}")
    if not os.path.isfile(path):
        raise ValueError(f"dataset {name}: {path} is not a file (give datasets.{name}.path)")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ValueError(f"dataset {name}: {path} is {size} bytes, more than max_bytes {max_bytes}; serve a "
                         f"smaller table or raise datasets.{name}.max_bytes (at most {MAX_BYTES})")
    limits = (max_rows, max_columns, max_bytes)
    if suffix == ".csv":
        label = entry.get("label")
        if not isinstance(label, str) or not label:
            raise ValueError(f"datasets.{name}.label: required for a CSV table: the name of its label column")
        columns = _csv_header(name, path, label, max_columns)
    else:
        if "label" in entry:
            raise ValueError(f"datasets.{name}.label: only for CSV tables (an .npz holds arrays x and y)")
        label, columns = None, _npz_columns(name, path, max_rows, max_columns, max_bytes)
    categorical = _categorical(name, entry.get("categorical", []), columns, suffix)
    return TableSource(name, entry, path, suffix, columns, label, categorical, limits, device)


def _categorical(name: str, given: Any, columns: list[str], suffix: str) -> tuple[int, ...]:
    """Categorical columns by name (CSV) or index into the served row's columns."""
    if not isinstance(given, list):
        raise ValueError(f"datasets.{name}.categorical: expected a list of column names or indices, "
                         f"got {shown(given)}")
    found = []
    for item in given:
        if isinstance(item, int) and not isinstance(item, bool):
            if not -len(columns) <= item < len(columns):
                raise ValueError(f"datasets.{name}.categorical: column index {item} outside [0, {len(columns)}) "
                                 "(indices count the served row's columns: the label column is not one)")
            found.append(item % len(columns))
        elif isinstance(item, str) and suffix == ".csv":
            if item not in columns:
                raise ValueError(f"datasets.{name}.categorical: no column {shown(item)} in the table's header "
                                 f"(columns: {', '.join(columns[:20])}{', ...' if len(columns) > 20 else ''})")
            found.append(columns.index(item))
        else:
            what = "a column name or index" if suffix == ".csv" else "a column index (an .npz has no names)"
            raise ValueError(f"datasets.{name}.categorical: expected {what}, got {shown(item)}")
    if len(set(found)) == len(columns):
        raise ValueError(f"datasets.{name}.categorical: every column is categorical; a table needs at least one "
                         "continuous column")
    return tuple(sorted(set(found)))


def _csv_header(name: str, path: str, label: str, max_columns: int) -> list[str]:
    with open(path, newline="", encoding="utf-8") as file:
        header = next(csv.reader(file), None)
    if not header:
        raise ValueError(f"dataset {name}: {path} has no header row (a CSV table starts with its column names)")
    header = [column.strip() for column in header]
    if label not in header:
        raise ValueError(f"datasets.{name}.label: no column {shown(label)} in the header of {path} "
                         f"(columns: {', '.join(header[:20])}{', ...' if len(header) > 20 else ''})")
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise ValueError(f"dataset {name}: {path} names column {repeated[0]!r} twice in its header")
    columns = [column for column in header if column != label]
    if not columns:
        raise ValueError(f"dataset {name}: {path} has no column besides the label {label!r}")
    if len(columns) > max_columns:
        raise ValueError(f"dataset {name}: {path} has {len(columns)} feature columns, more than max_columns "
                         f"{max_columns}; raise datasets.{name}.max_columns (at most {MAX_COLUMNS})")
    return columns


def _read_csv(source: TableSource) -> Table:
    """The rows, a chunk at a time: continuous columns parsed as float, categorical ones kept as numbers where
    every value is one, else coded 0..K-1 by their sorted values; labels kept as integers where every one is a
    class number below the label limit, else coded by their sorted names."""
    name, path = source.name, source.path
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = [column.strip() for column in next(reader)]
        width, label_at = len(header), header.index(source.label)
        feature_at = [i for i in range(width) if i != label_at]
        continuous = [c for c in range(len(feature_at)) if c not in source.categorical]
        values, categories, labels, chunk, lines = [], {c: [] for c in source.categorical}, [], [], []
        count = 0
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if len(row) != width:
                raise ValueError(f"dataset {name}: {path} line {reader.line_num} has {len(row)} values, the header "
                                 f"{width}")
            chunk.append(row)
            lines.append(reader.line_num)
            count += 1
            if count > source.max_rows:
                raise ValueError(f"dataset {name}: {path} has more than max_rows {source.max_rows} rows; serve "
                                 f"fewer or raise datasets.{name}.max_rows (at most {MAX_ROWS})")
            if len(chunk) == CSV_CHUNK:
                values.append(_parse_chunk(source, chunk, lines, feature_at, continuous, categories, labels,
                                           label_at))
                chunk, lines = [], []
        if chunk:
            values.append(_parse_chunk(source, chunk, lines, feature_at, continuous, categories, labels, label_at))
    if not values:
        raise ValueError(f"dataset {name}: {path} has a header but no rows")
    x = np.concatenate(values)
    for c, strings in categories.items():
        x[:, c] = _category_codes(np.concatenate(strings))
    codes, classes = _label_codes(name, path, np.concatenate(labels))
    return Table(x, codes, source.columns, classes, source.categorical)


def _parse_chunk(source: TableSource, chunk: list[list[str]], lines: list[int], feature_at: list[int],
                 continuous: list[int], categories: dict[int, list], labels: list, label_at: int) -> np.ndarray:
    text = np.array(chunk, dtype=str)
    features = text[:, feature_at]
    x = np.zeros(features.shape, dtype=np.float32)
    try:
        x[:, continuous] = features[:, continuous].astype(np.float64)
    except ValueError:
        _bad_value(source, features, lines, continuous)
    if not np.isfinite(x[:, continuous]).all():
        row, column = np.argwhere(~np.isfinite(x[:, continuous]))[0]
        raise ValueError(f"dataset {source.name}: {source.path} line {lines[row]}, column "
                         f"{source.columns[continuous[column]]!r}: {str(features[row, continuous[column]])!r} is not a "
                         "finite number (or overflows float32)")
    for c in categories:
        categories[c].append(np.char.strip(features[:, c]))
    labels.append(np.char.strip(text[:, label_at]))
    return x


def _bad_value(source: TableSource, features: np.ndarray, lines: list[int], continuous: list[int]) -> None:
    """Name the first value of a continuous column that is not a number (its line and column)."""
    for row in range(len(features)):
        for column in continuous:
            value = str(features[row, column])
            try:
                float(value)
            except ValueError:
                what = "is empty (missing values are not supported: fill or drop them)" if not value.strip() else \
                    f"is not a number (a column of categories? list it in datasets.{source.name}.categorical)"
                raise ValueError(f"dataset {source.name}: {source.path} line {lines[row]}, column "
                                 f"{source.columns[column]!r}: {value!r} {what}") from None
    raise ValueError(f"dataset {source.name}: {source.path}: a value is not a number")


def _category_codes(strings: np.ndarray) -> np.ndarray:
    try:
        return strings.astype(np.float64).astype(np.float32)
    except ValueError:
        return np.unique(strings, return_inverse=True)[1].astype(np.float32)


def _label_codes(name: str, path: str, strings: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if not len(strings) or not all(strings):
        raise ValueError(f"dataset {name}: {path}: a row has an empty label")
    try:
        numbers = strings.astype(np.int64)
        if numbers.min() >= 0 and numbers.max() < MAX_CLASSES:
            return numbers, [str(c) for c in range(int(numbers.max()) + 1)]
    except ValueError:
        pass
    classes, codes = np.unique(strings, return_inverse=True)
    if len(classes) > MAX_CLASSES:
        raise ValueError(f"dataset {name}: {path} has {len(classes)} classes, more than {MAX_CLASSES}")
    return codes.astype(np.int64), [str(c) for c in classes]


def _npz_header(archive: zipfile.ZipFile, member: str, name: str, path: str) -> tuple[tuple[int, ...], np.dtype]:
    if member not in archive.namelist():
        raise ValueError(f"dataset {name}: {path} has no array {member[:-4]!r} (a table .npz holds x (N, F) and "
                         "y (N,))")
    with archive.open(member) as file:
        version = np.lib.format.read_magic(file)
        shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                           np.lib.format.read_array_header_2_0)(file)
    return shape, dtype


def _npz_columns(name: str, path: str, max_rows: int, max_columns: int, max_bytes: int) -> list[str]:
    """Column names "0".."F-1", from the arrays' headers (shapes and dtypes checked, nothing read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            x_shape, x_dtype = _npz_header(archive, "x.npy", name, path)
            y_shape, y_dtype = _npz_header(archive, "y.npy", name, path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"dataset {name}: {path} is not a readable .npz ({error})") from None
    if len(x_shape) != 2 or x_dtype.kind not in "biuf":
        raise ValueError(f"dataset {name}: {path}: x must be numbers (N, F), got {x_dtype} {list(x_shape)}")
    if y_shape != x_shape[:1] or y_dtype.kind not in "iuU":
        raise ValueError(f"dataset {name}: {path}: y must be ({x_shape[0]},) integers or strings, one label per "
                         f"row, got {y_dtype} {list(y_shape)}")
    if x_shape[0] > max_rows:
        raise ValueError(f"dataset {name}: {path} has {x_shape[0]} rows, more than max_rows {max_rows}; serve fewer "
                         f"or raise datasets.{name}.max_rows (at most {MAX_ROWS})")
    if not 1 <= x_shape[1] <= max_columns:
        raise ValueError(f"dataset {name}: {path} has {x_shape[1]} columns; expected 1 to max_columns "
                         f"{max_columns} (raise datasets.{name}.max_columns, at most {MAX_COLUMNS})")
    if x_shape[0] * x_shape[1] * 4 > max_bytes:  # as float32 in memory: compression hides it in the file's size
        raise ValueError(f"dataset {name}: {path} holds {x_shape[0]} x {x_shape[1]} values, "
                         f"{x_shape[0] * x_shape[1] * 4} bytes as float32, more than max_bytes {max_bytes}; serve "
                         f"a smaller table or raise datasets.{name}.max_bytes (at most {MAX_BYTES})")
    return [str(c) for c in range(x_shape[1])]


def _read_npz(source: TableSource) -> Table:
    with np.load(source.path, allow_pickle=False) as loaded:
        x, y = np.asarray(loaded["x"]), np.asarray(loaded["y"])
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        row, column = bad[0]
        raise ValueError(f"dataset {source.name}: {source.path}: x[{row}, {column}] is not a finite number")
    codes, classes = _label_codes(source.name, source.path, y.astype(str))
    return Table(np.ascontiguousarray(x), codes, source.columns, classes, source.categorical)


def declare_tables(loaders: dict) -> list[str]:
    """Make every served table's statistics the table_stats entry of its name (read when a step first needs
    them); the names."""
    names = [name for name, loader in loaders.items() if isinstance(loader, TableSource)]
    for name in names:
        table_stats.declare(name, loaders[name].stats)
    return names


def read_tables(loaders: dict, names: list[str]) -> threading.Thread:
    """Read the served tables now, beside serving (rows, statistics, SMOTE's neighbours), so no stream or step
    waits on it; a table that cannot be read is logged, and named again to whoever asks for it."""
    def read() -> None:
        for name in names:
            try:
                loaders[name]()
                loaders[name].stats()
            except Exception:
                log.exception("table %r could not be read", name)

    thread = threading.Thread(target=read, name="augserve-tables", daemon=True)
    thread.start()
    return thread
