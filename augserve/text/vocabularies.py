"""Named vocabularies: a client that already holds word ids (B, L) sends them with the name of the word list they
index, and gets ids of that list back. Steps then only write words of the list: a synonym with a word outside it
is left out, and a refill outside it keeps the word it would have replaced.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from augserve.named import Named
from augserve.ops.text import valid
from augserve.text.batch import SynonymTable, TextBatch, synonym_table

MAX_VOCABULARY = 1 << 21  # most words a vocabulary may hold


@dataclass
class Vocabulary:
    """A word list (id -> word) and its synonym table restricted to it, made once per device on first use."""

    name: str
    words: tuple[str, ...]  # shared by every batch over it, never copied: a tuple, so no step can grow it
    _tables: dict[torch.device, SynonymTable] = field(default_factory=dict, repr=False)
    _array: np.ndarray | None = field(default=None, repr=False)  # ``words`` as the array batches look words up in
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def table(self, device: torch.device) -> SynonymTable:
        with self._lock:
            if device not in self._tables:
                self._tables[device] = _closed(synonym_table(list(self.words), torch.device("cpu")),
                                               len(self.words)).to(device)
            return self._tables[device]

    def batch(self, ids: torch.Tensor, lengths: torch.Tensor) -> TextBatch:
        """Checked ids (B, L) and lengths (B,) as a batch over this word list (ValueError naming a sample)."""
        inside = valid(lengths, ids.shape[1])
        bad = inside & ((ids < 0) | (ids >= len(self.words)))
        if bool(bad.any()):
            sample = int(bad.any(1).nonzero()[0])
            raise ValueError(f"x[{sample}]: word ids must lie in [0, {len(self.words)}) (vocabulary {self.name!r} "
                             f"has {len(self.words)} words), got {int(ids[sample][bad[sample]][0])}")
        ids = torch.where(inside, ids, 0)
        if self._array is None:
            self._array = np.asarray(self.words, dtype=object)
        return TextBatch(ids, lengths, self.words, closed=True,
                         _synonyms=[(self.table(ids.device), len(self.words))], _array=[(self.words, self._array)])


def _closed(table: SynonymTable, size: int) -> SynonymTable:
    """``table`` without the synonyms that hold a word at or past ``size`` (words the list lacks)."""
    rows = table.phrases[table.phrase]
    inside = torch.arange(rows.shape[1])[None, :] < table.phrase_lengths[table.phrase][:, None]
    keep = ~(inside & (rows >= size)).any(1)
    multi = table.phrase >= table.count.shape[0]  # rows past the grown word list: phrases of several words
    kept_multi = torch.unique(table.phrase[keep & multi])
    renumber = torch.full((table.phrases.shape[0],), -1, dtype=torch.int64)
    renumber[:size] = torch.arange(size)
    renumber[kept_multi] = size + torch.arange(len(kept_multi))
    owner = torch.repeat_interleave(torch.arange(table.count.shape[0]), table.count)
    count = torch.bincount(owner[keep], minlength=table.count.shape[0])[:size]
    return SynonymTable(start=torch.cumsum(count, 0) - count, count=count, phrase=renumber[table.phrase[keep]],
                        phrases=torch.cat([table.phrases[:size], table.phrases[kept_multi]]),
                        phrase_lengths=torch.cat([table.phrase_lengths[:size], table.phrase_lengths[kept_multi]]),
                        stop=table.stop[:size])


VOCABULARIES: Named[Vocabulary] = Named("vocabulary", "register one in process with "
                                        "augserve.text.vocabularies.register(name, words)")


def register(name: str, words: list[str]) -> Vocabulary:
    """Name a word list (id i is ``words[i]``) for id batches; ValueError for one that cannot be one."""
    if not isinstance(words, (list, tuple)) or not 0 < len(words) <= MAX_VOCABULARY:
        raise ValueError(f"vocabulary {name!r}: expected a list of 1 to {MAX_VOCABULARY} words (MAX_VOCABULARY)")
    if not all(isinstance(word, str) and word and not any(c.isspace() for c in word) for word in words):
        raise ValueError(f"vocabulary {name!r}: every entry must be a word (non-empty text without spaces)")
    if len(set(words)) != len(words):
        seen: set[str] = set()
        repeated = next(word for word in words if word in seen or seen.add(word))
        raise ValueError(f"vocabulary {name!r}: {repeated!r} appears more than once")
    return VOCABULARIES.put(name, Vocabulary(name, tuple(words)))
