"""Sentences as a tensor batch: word ids (B, L) into the request's own word list, and each sentence's length.

Every operation on text is a batched tensor op on these ids. The word list is the request's words in the order
first met, then the words the steps may write (synonyms), added when a step first asks for the synonym table.
A word outside WordNet keeps its own id for the request. No result depends on which id a word got: choices
among a sentence's words follow positions, choices among synonyms their sorted text.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from augserve.ops.text import valid
from augserve.text import wordnet
from augserve.text.tokens import STOP_WORDS, words_of_all

MAX_WORDS = 512  # default and largest number of words a sentence may have, in and out (more are cut)
MAX_CHARS = 1 << 16  # most characters a sentence may have


@dataclass
class SynonymTable:
    """Each word's synonyms as phrases, on the batch's device. Phrase ids below the word count are single
    words (phrase i is word i), the rest rows of ``phrases`` from ``words`` on."""

    start: torch.Tensor  # (V,) int64: where a word's synonyms begin in ``phrase``
    count: torch.Tensor  # (V,) int64: how many synonyms a word has (0: none)
    phrase: torch.Tensor  # (E,) int64 phrase ids, each word's sorted
    phrases: torch.Tensor  # (P, K) int64 word ids (phrase p < V: [p, 0, ...]); K the longest phrase
    phrase_lengths: torch.Tensor  # (P,) int64
    stop: torch.Tensor  # (V,) bool: EDA's stop words, never replaced

    def to(self, device: torch.device) -> "SynonymTable":
        return SynonymTable(*(getattr(self, name).to(device) for name in self.__dataclass_fields__))


@dataclass
class TextBatch:
    """A batch of tokenized sentences; ``words`` is shared by every sample and only ever grows (a named
    vocabulary's, a tuple, never does)."""

    ids: torch.Tensor  # (B, L) int64; positions at or past a sample's length hold 0 and are never read
    lengths: torch.Tensor  # (B,) int64 words per sentence
    words: list[str] | tuple[str, ...]
    originals: list[str] = field(default_factory=list, repr=False)  # the sentences as sent (back-translation's)
    closed: bool = False  # ids of a named vocabulary: ``words`` is its tuple, and steps write none outside it
    called: str = "x"  # what the caller calls the sentences, in errors that name one (the wire's "texts")
    # the synonym table and how many of ``words`` it looked up: made on first use, made again for words added since
    _synonyms: list[tuple[SynonymTable, int]] = field(default_factory=list, repr=False)
    # (``words``, it as a numpy object array extended when words were added): shared by the batch's copies
    _array: list[tuple[list[str] | tuple[str, ...], np.ndarray]] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return self.ids.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "TextBatch":
        """The same sentences with their ids (and any synonym table) on ``device``."""
        return replace(self, ids=self.ids.to(device, non_blocking=non_blocking),
                       lengths=self.lengths.to(device, non_blocking=non_blocking),
                       _synonyms=[(table.to(device), covered) for table, covered in self._synonyms])

    def with_ids(self, ids: torch.Tensor, lengths: torch.Tensor) -> "TextBatch":
        """The same word list and tables with other sentences."""
        return replace(self, ids=ids, lengths=lengths)

    def sentences(self) -> list[str]:
        """The sentences as text: words joined by one space."""
        return self.joined(self.ids, self.lengths)

    def words_of(self, ids: torch.Tensor) -> np.ndarray:
        """The words of ``ids`` (any shape) as a numpy object array of that shape."""
        known = self._array[0][1] if self._array and self._array[0][0] is self.words else np.empty(0, dtype=object)
        if len(known) < len(self.words):  # this list's words only grow: the array so far is a prefix
            known = np.concatenate([known, np.asarray(self.words[len(known):], dtype=object)])
            self._array[:] = [(self.words, known)]
        return known[ids.cpu().numpy()]

    def joined(self, rows: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Rows of word ids (each its first ``lengths`` ones) as text: words joined by one space."""
        return [" ".join(row[:length]) for row, length in zip(self.words_of(rows), lengths.tolist())]

    def add_words(self, sentences: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentences of words as ids (B', L') and lengths, their new words appended to ``words`` (a synonym
        table made before is made again when next asked for)."""
        if self.closed:
            raise ValueError("word ids of a named vocabulary take only words of that vocabulary")
        index = {word: number for number, word in enumerate(self.words)}
        for words in sentences:
            for word in words:
                if word not in index:
                    index[word] = len(self.words)
                    self.words.append(word)
        self._synonyms.clear()
        lengths = torch.tensor([len(words) for words in sentences], dtype=torch.int64)
        ids = torch.zeros(len(sentences), max(int(lengths.max()), 1) if len(sentences) else 1, dtype=torch.int64)
        ids[valid(lengths, ids.shape[1])] = torch.tensor([index[w] for words in sentences for w in words],
                                                             dtype=torch.int64)
        return ids.to(self.ids.device), lengths.to(self.ids.device)

    def synonyms(self) -> SynonymTable:
        """The synonym table of every word the sentences hold (the words it brings are appended to ``words``): made
        again when they hold a word added since (a synonym an earlier step wrote), so that word's own synonyms
        do not depend on whether another sentence of the batch held it."""
        if self._synonyms:
            table, covered = self._synonyms[0]
            if covered == len(self.words) or int(self.ids.max()) < covered:
                return table
        covered = len(self.words)
        self._synonyms[:] = [(synonym_table(self.words, self.ids.device), covered)]
        return self._synonyms[0][0]


class SentenceError(ValueError):
    """Sentences a pipeline cannot take: the message names the first; ``problems`` lists every one as (its place
    in the batch, why), so a served dataset leaves them all out at once. ``index``: the first's place."""

    def __init__(self, message: str, problems: list[tuple[int, str]]):
        super().__init__(message)
        self.problems, self.index = problems, problems[0][0]


def encode(sentences: list[str], tokenizer: str, max_words: int = MAX_WORDS, device: torch.device | str = "cpu",
           field: str = "x") -> TextBatch:
    """Tokenize and number a batch of sentences; ValueError naming the first sentence that is not one (as
    ``field[i]``: a ``SentenceError``, which lists them all)."""
    if not isinstance(sentences, (list, tuple)) or not sentences:
        raise ValueError(f"{field}: expected a non-empty list of sentences (str), got {_what(sentences)}")
    for number, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise SentenceError(f"{field}[{number}]: expected a sentence (str), got {type(sentence).__name__}",
                                [(number, f"expected a sentence (str), got {type(sentence).__name__}")])
    characters = list(map(len, sentences))
    too_long = {i for i, size in enumerate(characters) if size > MAX_CHARS}
    tokenized = words_of_all(tokenizer, [s if i not in too_long else "" for i, s in enumerate(sentences)])
    lengths = np.fromiter(map(len, tokenized), dtype=np.int64, count=len(tokenized))
    problems = sorted([(i, f"{characters[i]} characters; the limit is {MAX_CHARS}") for i in too_long]
                      + [(int(i), f"no words in {sentences[i][:40]!r} (the tokenizer keeps letters only: send "
                                  "sentences with at least one word)") for i in np.flatnonzero(lengths == 0)
                         if i not in too_long]
                      + [(int(i), f"{lengths[i]} words; the limit is {max_words} (split the text, or raise the "
                                  "pipeline's max_words)") for i in np.flatnonzero(lengths > max_words)])
    if problems:
        first, why = problems[0]
        raise SentenceError(f"{field}[{first}]: {why}", problems)
    flat = list(itertools.chain.from_iterable(tokenized))
    numbers = {word: number for number, word in enumerate(dict.fromkeys(flat))}  # in the order first met
    ids = np.zeros((len(tokenized), int(lengths.max())), dtype=np.int64)
    ids[np.arange(ids.shape[1])[None, :] < lengths[:, None]] = np.fromiter(map(numbers.__getitem__, flat),
                                                                           dtype=np.int64, count=len(flat))
    return TextBatch(torch.from_numpy(ids).to(device), torch.from_numpy(lengths).to(device), list(numbers),
                     list(sentences), called=field)


def _what(value) -> str:
    return "an empty list" if isinstance(value, (list, tuple)) else type(value).__name__


_numbers: dict[str, int] = {}  # every word of a synonym phrase met so far, numbered for the process
_numbered_words: list[str] = []  # those words by number
_phrase_numbers: dict[tuple[str, ...], int] = {}
_numbering = threading.Lock()


class _Column:
    """An int64 array that only grows (doubling): what was written stays, so a view read once stays true."""

    def __init__(self):
        self.data, self.size = np.zeros(1 << 12, dtype=np.int64), 0

    def extend(self, values) -> int:
        """Append ``values``; where they start."""
        values = np.asarray(values, dtype=np.int64)
        at, end = self.size, self.size + len(values)
        if end > len(self.data):
            grown = np.zeros(max(end, 2 * len(self.data)), dtype=np.int64)
            grown[:at] = self.data[:at]
            self.data = grown
        self.data[at:end] = values
        self.size = end
        return at

    def view(self) -> np.ndarray:
        return self.data[:self.size]


class _Looked:
    """Every word looked up that has synonyms, packed for the process: row -> its phrases' process-wide numbers,
    lengths and words, so a batch's table is a few gathers (WordNet's words bound it)."""

    def __init__(self):
        self.rows: dict[str, int] = {}
        self.start, self.count = _Column(), _Column()  # per row: its entries
        self.phrase, self.size, self.first = _Column(), _Column(), _Column()  # per entry: number, words, first word
        self.flat = _Column()  # the entries' words, one after another

    def row(self, word: str) -> int:
        """The word's row (-1: no synonyms, or too long to be a lemma), looked up and packed the first time."""
        row = self.rows.get(word)
        if row is not None:
            return row
        phrases = wordnet.synonyms(word) if len(word) <= wordnet.MAX_LEMMA else ()
        if not phrases:
            return -1
        with _numbering:
            if word not in self.rows:
                for phrase in phrases:
                    _phrase_numbers.setdefault(phrase, len(_phrase_numbers))
                    for known in phrase:
                        if known not in _numbers:
                            _numbers[known] = len(_numbered_words)
                            _numbered_words.append(known)
                sizes = [len(phrase) for phrase in phrases]
                flat = self.flat.extend([_numbers[known] for phrase in phrases for known in phrase])
                self.start.extend([self.phrase.extend([_phrase_numbers[phrase] for phrase in phrases])])
                self.size.extend(sizes)
                self.first.extend(flat + np.cumsum(sizes) - sizes)
                self.count.extend([len(phrases)])
                self.rows[word] = len(self.rows)
            return self.rows[word]

    def entries(self, words: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each word's synonym count, then its synonyms one after another: phrase numbers, lengths, words."""
        rows = np.fromiter(map(self.row, words), dtype=np.int64, count=len(words))
        with _numbering:
            start, count, phrase, size, first, flat = (column.view() for column in (
                self.start, self.count, self.phrase, self.size, self.first, self.flat))
        counts = np.where(rows >= 0, count[rows.clip(min=0)] if len(count) else 0, 0)
        entry = _ranges(start[rows.clip(min=0)] if len(start) else rows, counts)
        sizes = size[entry]
        return counts, phrase[entry], sizes, flat[_ranges(first[entry], sizes)]


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1, for every i in turn."""
    ends = np.cumsum(counts)
    return np.repeat(starts - ends + counts, counts) + np.arange(int(ends[-1]) if len(ends) else 0)


_LOOKED = _Looked()


def synonym_table(words: list[str], device: torch.device) -> SynonymTable:
    """The table for the first ``len(words)`` words; their synonyms' words are appended to ``words`` in the order
    first met (each word's phrases in turn), and phrases of several words get rows in that order too.

    Built with gathers from every word's synonyms packed for the process (``_Looked``): a Python loop over every
    phrase of every word was most of a synonym step's time."""
    present = len(words)
    counts, phrase, size, flat = _LOOKED.entries(words)
    words_of = _word_ids(words, flat)
    vocabulary, starts = len(words), np.cumsum(size) - size
    several = np.flatnonzero(size > 1)
    kinds, leads, which = np.unique(phrase[several], return_index=True, return_inverse=True)
    rank = np.empty(len(kinds), dtype=np.int64)
    rank[np.argsort(leads)] = np.arange(len(kinds))  # phrases of several words, in the order first met
    phrase_ids = words_of[starts]
    phrase_ids[several] = vocabulary + rank[which]
    leaders, rows = several[leads], vocabulary + rank
    table = np.zeros((vocabulary + len(kinds), int(size[leaders].max(initial=1))), dtype=np.int64)
    table[:vocabulary, 0] = np.arange(vocabulary)
    phrase_lengths = np.ones(len(table), dtype=np.int64)
    phrase_lengths[rows] = size[leaders]
    for k in range(table.shape[1]):  # K words per phrase at most
        has = size[leaders] > k
        table[rows[has], k] = words_of[starts[leaders[has]] + k]
    count = torch.from_numpy(np.concatenate([counts, np.zeros(vocabulary - present, dtype=np.int64)]))
    return SynonymTable(
        start=(torch.cumsum(count, 0) - count).to(device), count=count.to(device),
        phrase=torch.from_numpy(phrase_ids).to(device),
        phrases=torch.from_numpy(table).to(device), phrase_lengths=torch.from_numpy(phrase_lengths).to(device),
        stop=torch.from_numpy(np.fromiter(map(STOP_WORDS.__contains__, words), dtype=bool, count=vocabulary))
        .to(device))


def _word_ids(words: list[str], numbers: np.ndarray) -> np.ndarray:
    """Process-wide word numbers as ids into ``words``: a word it holds keeps its id, the others are appended to
    it in the order first met."""
    unique, first, inverse = np.unique(numbers, return_index=True, return_inverse=True)
    own = np.array([_numbers.get(word, -1) for word in words], dtype=np.int64)  # -1: in no phrase
    order = np.argsort(own)
    at = np.searchsorted(own[order], unique).clip(max=max(len(own) - 1, 0))
    held = own[order][at] == unique if len(own) else np.zeros(len(unique), dtype=bool)
    new = np.flatnonzero(~held)
    new = new[np.argsort(first[new])]
    ids = np.empty(len(unique), dtype=np.int64)
    ids[held] = order[at[held]]
    ids[new] = len(words) + np.arange(len(new))
    words.extend(map(_numbered_words.__getitem__, unique[new].tolist()))
    return ids[inverse]
