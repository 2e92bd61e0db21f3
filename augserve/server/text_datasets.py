"""Served text datasets: labelled sentences from a ``label<TAB>sentence`` file or a class folder of .txt files
(one sentence per line), read whole at start-up, with the paraphrases back-translation reads.

Sentences are small, so a dataset is read when the server starts: a bad line (not UTF-8, no tab, an empty
sentence, one past ``max_chars``) or a dataset past ``max_sentences`` stops start-up naming the file and line.
Its paraphrase file (``paraphrases``, by default its path plus ``.paraphrases.tsv``), when there is one, goes
into the paraphrase store then; ``augserve datasets translate CONFIG NAME`` writes it.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Iterator, NoReturn

import numpy as np
import torch

from augserve.labels import MAX_CLASSES
from augserve.server.file_datasets import Samples
from augserve.spec import shown
from augserve.text import paraphrases, translation
from augserve.text.batch import MAX_CHARS

FIELDS = {"type", "path", "paraphrases", "max_sentences", "max_chars"}
MAX_SENTENCES = 1_000_000  # default and most sentences per dataset
MAX_SENTENCE_CHARS = 1000  # default characters per sentence (at most MAX_CHARS, what a text pipeline takes)
MAX_LABEL_BYTES = 256  # of a label in a label<TAB>sentence line


@dataclass
class TextDataset:
    """Sentences and their labels; ``origins`` says where each came from (file index, line)."""

    name: str
    sentences: list[str]
    labels: torch.Tensor  # (N,) int64 class codes
    classes: list[str]  # class code -> its name in the data
    files: list[str]
    origins: np.ndarray  # (N, 2) int64: index into ``files``, line number
    paraphrase_file: pathlib.Path
    modality = "text"

    def __call__(self) -> "TextDataset":
        """Read whole at start-up, a text dataset is its own loader (so ``ListDatasets`` reports it at once)."""
        return self

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> str:
        """Where its sentences come from and how many back_translation finds a paraphrase for."""
        held = paraphrases.load(self.paraphrase_file) if self.paraphrase_file.is_file() else {}
        found = sum(1 for sentence in self.sentences if (key := paraphrases.key(sentence)) in held or not key)
        return (f"sentences from {len(self.files)} file(s), {found} with a paraphrase in {self.paraphrase_file}"
                + ("" if found == len(self) else " (augserve datasets translate writes the rest)"))

    def read(self, indices: torch.Tensor, max_pixels: int = 0) -> Samples:
        """A batch's sentences (``x``, a list of str) and labels; nothing is skipped."""
        return Samples([self.sentences[i] for i in indices.tolist()], indices, self.labels[indices], [])

    def where(self, index: int) -> str:
        file, line = self.origins[index]
        return f"{self.files[file]} line {line}"


def _integer(name: str, entry: dict, key: str, default: int, high: int) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"datasets.{name}.{key}: expected an integer in [1, {high}], got {shown(value)}")
    return value


class _Reader:
    """Reads lines of files within the dataset's limits, naming the file and line of the first bad one."""

    def __init__(self, name: str, max_sentences: int, max_chars: int):
        self.name, self.max_sentences, self.max_chars = name, max_sentences, max_chars
        self.files: list[str] = []
        self.sentences: list[str] = []
        self.names: list[str] = []  # each sentence's class name
        self.origins: list[tuple[int, int]] = []

    def lines(self, path: pathlib.Path, tabbed: bool) -> Iterator[tuple[int, str]]:
        """(line number, text) of each line that is not blank, its length checked before it is decoded."""
        self.files.append(str(path))
        limit = 4 * self.max_chars + (MAX_LABEL_BYTES + 1 if tabbed else 0) + 2  # UTF-8: at most 4 bytes a char
        with open(path, "rb") as file:
            for number, raw in enumerate(iter(lambda: file.readline(limit), b""), 1):
                if len(raw) == limit and not raw.endswith(b"\n"):
                    self.fail(path, number, f"longer than max_chars {self.max_chars} allows{self.raise_chars}")
                try:
                    text = raw.decode().rstrip("\r\n")
                except UnicodeDecodeError as error:
                    self.fail(path, number, f"not UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1})")
                if text.strip():
                    yield number, text

    def keep(self, path: pathlib.Path, number: int, sentence: str, label: str) -> None:
        if len(sentence) > self.max_chars:
            self.fail(path, number, f"{len(sentence)} characters, more than max_chars {self.max_chars}"
                                    f"{self.raise_chars}")
        if len(self.sentences) == self.max_sentences:
            raise ValueError(f"dataset {self.name}: more than max_sentences {self.max_sentences} sentences (at "
                             f"{path} line {number}); serve fewer or raise datasets.{self.name}.max_sentences "
                             f"(at most {MAX_SENTENCES})")
        self.sentences.append(sentence)
        self.names.append(label)
        self.origins.append((len(self.files) - 1, number))

    def require_sentences(self, root: pathlib.Path) -> None:
        if not self.sentences:
            raise ValueError(f"dataset {self.name}: no sentences in {root}")

    @property
    def raise_chars(self) -> str:
        return f"; shorten it or raise datasets.{self.name}.max_chars (at most {MAX_CHARS})"

    def fail(self, path: pathlib.Path, number: int, why: str) -> NoReturn:
        raise ValueError(f"dataset {self.name}: {path} line {number}: {why}")


def _read_file(reader: _Reader, path: pathlib.Path) -> tuple[np.ndarray, list[str]]:
    """Class codes: the labels where all are integers 0 to MAX_CLASSES - 1, else the ranks of sorted names."""
    for number, text in reader.lines(path, tabbed=True):
        label, tab, sentence = text.partition("\t")
        if not tab:
            reader.fail(path, number, f"no tab: expected label<TAB>sentence, got {shown(text)}")
        if not label.strip() or len(label.encode()) > MAX_LABEL_BYTES:
            reader.fail(path, number, f"expected a label of 1 to {MAX_LABEL_BYTES} bytes before the tab, "
                                      f"got {shown(label)}")
        if not sentence.strip():
            reader.fail(path, number, "no sentence after the tab")
        reader.keep(path, number, sentence.strip(), label.strip())
    reader.require_sentences(path)
    names = reader.names
    if all(name.isascii() and name.isdigit() for name in names) and max(map(int, names)) < MAX_CLASSES:
        codes = np.asarray(names).astype(np.int64)
        return codes, [str(c) for c in range(int(codes.max()) + 1)]
    classes, codes = np.unique(np.asarray(names), return_inverse=True)
    return codes.astype(np.int64), [str(c) for c in classes]


def _read_folder(reader: _Reader, root: pathlib.Path) -> tuple[np.ndarray, list[str]]:
    """Class codes as an image folder's: the rank of each subfolder's name."""
    classes = sorted(child.name for child in root.iterdir() if child.is_dir())
    if not classes:
        raise ValueError(f"dataset {reader.name}: {root} has no class subfolders (expected one folder per class "
                         "holding .txt files, or a label<TAB>sentence file)")
    for name in classes:
        for path in sorted((root / name).rglob("*.txt")):
            if path.is_file():
                for number, text in reader.lines(path, tabbed=False):
                    reader.keep(path, number, text.strip(), name)
    reader.require_sentences(root)
    code = {name: index for index, name in enumerate(classes)}
    return np.asarray([code[name] for name in reader.names], dtype=np.int64), classes


def read_text_dataset(name: str, entry: dict[str, Any]) -> TextDataset:
    """A ``type: text`` dataset, read and checked whole, its paraphrase file (if any) put in the store."""
    max_sentences = _integer(name, entry, "max_sentences", MAX_SENTENCES, MAX_SENTENCES)
    max_chars = _integer(name, entry, "max_chars", MAX_SENTENCE_CHARS, MAX_CHARS)
    for field in ("path", "paraphrases"):
        if field in entry and (not isinstance(entry[field], str) or not entry[field]):
            raise ValueError(f"datasets.{name}.{field}: expected a path, got {shown(entry[field])}")
    if "path" not in entry:
        raise ValueError(f"datasets.{name}.path: required: a label<TAB>sentence file or a class folder")
    root = pathlib.Path(entry["path"])
    reader = _Reader(name, max_sentences, max_chars)
    if root.is_dir():
        codes, classes = _read_folder(reader, root)
    elif root.is_file():
        codes, classes = _read_file(reader, root)
    else:
        raise ValueError(f"dataset {name}: {root} is neither a file nor a folder (give datasets.{name}.path)")
    paraphrase_file = pathlib.Path(entry.get("paraphrases") or paraphrases.path_for(root))
    if paraphrase_file.is_file():
        paraphrases.add(paraphrases.load(paraphrase_file), f"dataset {name}")
    return TextDataset(name, reader.sentences, torch.from_numpy(codes), classes, reader.files,
                       np.asarray(reader.origins, dtype=np.int64), paraphrase_file)


def translate_dataset(dataset: TextDataset, pivot: str = translation.DEFAULT_PIVOT) -> tuple[int, int]:
    """Write the paraphrases of the sentences ``dataset``'s paraphrase file lacks, after what it holds (a chunk
    at a time, so a stopped run goes on where it stopped); (translated now, stored before) sentences."""
    path = dataset.paraphrase_file
    stored = paraphrases.load(path) if path.is_file() else {}
    todo: dict[str, str] = {}
    for sentence in dataset.sentences:
        k = paraphrases.key(sentence)
        if k and k not in stored:
            todo.setdefault(k, sentence)
    keys = iter(todo)
    for chunk in translation.round_trips(list(todo.values()), pivot, progress=True):
        made = {next(keys): paraphrase for paraphrase in chunk}
        paraphrases.save(path, made, append=True)
        paraphrases.add(made, f"dataset {dataset.name}")
    return len(todo), len(stored)
