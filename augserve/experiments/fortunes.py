"""The labelled sentences of ``augserve train --dataset fortunes``: Debian's fortune cookies by category.

Debian's ``fortunes`` package ships one plain file per category in /usr/share/games/fortunes, fortunes
separated by lines holding only ``%``. The set, fixed before any run: the five ``CATEGORIES`` (the files about
one topic with 500 or more fortunes of the right length), each fortune's text with overstrikes undone and
whitespace joined, kept when EDA's tokenizer finds ``MIN_WORDS`` to ``MAX_WORDS`` words in it. Fortunes with
the same words are one fortune (dropped if two categories claim it). A fortune is a test fortune when the
sha256 of its words falls in the first ``TEST_FRACTION`` of the hash range, so its side depends on nothing
else (not the seed, not the other fortunes); the rest is the training pool each seed draws its sentences from.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
import re
import subprocess
from dataclasses import dataclass

import numpy as np

from augserve.text.tokens import eda_words

FORTUNES_DIR = pathlib.Path("/usr/share/games/fortunes")
CATEGORIES = ("computers", "men-women", "politics", "science", "work")
MIN_WORDS, MAX_WORDS = 5, 60
TEST_FRACTION = 0.4
_SEPARATOR = re.compile(r"^%[ \t]*$", re.M)
_OVERSTRIKE = re.compile("[^\b]\b")  # a character and the backspace that steps back over it


@dataclass
class Sentences:
    texts: list[str]
    labels: np.ndarray  # int64, an index into the categories

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray) -> "Sentences":
        return Sentences([self.texts[i] for i in index], self.labels[index])

    def counts(self, categories: tuple[str, ...]) -> dict[str, int]:
        return {name: int(np.sum(self.labels == label)) for label, name in enumerate(categories)}


@dataclass
class Fortunes:
    pool: Sentences  # what training sentences are drawn from
    test: Sentences  # fixed by the hash of each fortune's words
    categories: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.categories)


def read_fortunes(path: pathlib.Path) -> list[str]:
    """A fortune file's fortunes, in file order: overstrikes undone, whitespace runs made one space."""
    text, struck = path.read_text(encoding="latin-1"), 1
    while struck:  # "_\bx" and "___\b\b\bxyz" (underlined) print as x and xyz: what follows the backspaces
        text, struck = _OVERSTRIKE.subn("", text)
    return [" ".join(part.split()) for part in _SEPARATOR.split(text) if part.strip()]


def is_test(words: list[str]) -> bool:
    """Whether a fortune with these words is on the test side: the first 64 bits of the sha256 of the words
    (joined by spaces) below ``TEST_FRACTION`` of their range."""
    digest = hashlib.sha256(" ".join(words).encode()).digest()
    return int.from_bytes(digest[:8], "big") < TEST_FRACTION * 2 ** 64


@functools.lru_cache(maxsize=2)
def load_fortunes(folder: str | None = None, categories: tuple[str, ...] = CATEGORIES) -> Fortunes:
    """The chosen categories' fortunes of ``MIN_WORDS`` to ``MAX_WORDS`` words, deduplicated, split by hash."""
    root = pathlib.Path(folder) if folder else FORTUNES_DIR
    missing = [name for name in categories if not (root / name).is_file()]
    if missing:
        raise RuntimeError(f"fortunes: {root / missing[0]} not found; install Debian's fortune files with "
                           "`apt-get install fortunes`")
    first: dict[str, tuple[str, int]] = {}  # words -> (text, label), the first occurrence's text
    claimed: dict[str, set[int]] = {}
    for label, name in enumerate(categories):
        for text in read_fortunes(root / name):
            words = eda_words(text)
            if MIN_WORDS <= len(words) <= MAX_WORDS:
                key = " ".join(words)
                first.setdefault(key, (text, label))
                claimed.setdefault(key, set()).add(label)
    sides: dict[bool, tuple[list[str], list[int]]] = {False: ([], []), True: ([], [])}
    for key, (text, label) in first.items():
        if len(claimed[key]) == 1:
            texts, labels = sides[is_test(key.split())]
            texts.append(text)
            labels.append(label)
    pool, test = (Sentences(texts, np.array(labels, dtype=np.int64)) for texts, labels in (sides[False], sides[True]))
    return Fortunes(pool, test, tuple(categories))


def draw_training(pool: Sentences, per_class: int, seed: int) -> Sentences:
    """``per_class`` sentences of each category drawn from the pool by ``seed``, in pool order."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(pool.labels):
        members = np.flatnonzero(pool.labels == label)
        if len(members) < per_class:
            raise ValueError(f"fortunes: category {label} has {len(members)} pool sentences, fewer than the "
                             f"{per_class} per category asked for")
        chosen.append(rng.choice(members, per_class, replace=False))
    return pool.subset(np.sort(np.concatenate(chosen)))


def package_version() -> str | None:
    """The installed ``fortunes`` package's version (None where dpkg does not know it)."""
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "fortunes"], capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() or None


def dataset_record(data: Fortunes) -> dict:
    """What the set was, for results: the rule, the sizes, and a digest of the test texts (the same digest, the
    same test)."""
    test = hashlib.sha256("\n".join(f"{label}\t{text}" for text, label in zip(data.test.texts, data.test.labels))
                          .encode()).hexdigest()
    rule = (f"Debian's fortune files ({', '.join(data.categories)}), fortunes of {MIN_WORDS} to {MAX_WORDS} words by "
            "EDA's tokenizer, deduplicated by their words (dropped where two categories hold the same), a fortune on "
            f"the test side when the sha256 of its words falls in the first {TEST_FRACTION:.0%} of the hash range.")
    return {"package": "fortunes", "version": package_version(), "categories": list(data.categories),
            "min_words": MIN_WORDS, "max_words": MAX_WORDS, "test_fraction": TEST_FRACTION, "rule": rule,
            "pool_sentences": len(data.pool), "test_sentences": len(data.test),
            "pool_counts": data.pool.counts(data.categories), "test_counts": data.test.counts(data.categories),
            "test_sha256": test}
