"""Word-level tokenizers: EDA's (the default) and whitespace, and EDA's stop words.

EDA's rule (Wei & Zou's ``get_only_chars``): apostrophes dropped, hyphens, tabs and newlines made spaces,
lowercase, every character but a-z made a space, runs of spaces joined. Its stop words are never replaced by
a synonym. ``whitespace`` keeps every non-space run as a word, lowercased, for text already tokenized.
"""

from __future__ import annotations

import re
from typing import Callable

_DROPPED = str.maketrans("", "", "\u2019'")
_NOT_LETTER = re.compile(r"[^a-z]+")

STOP_WORDS = frozenset((
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers "
    "herself it its itself they them their theirs themselves what which who whom this that these those am is are "
    "was were be been being have has had having do does did doing a an the and but if or because as until while "
    "of at by for with about against between into through during before after above below to from up down in out "
    "on off over under again further then once here there when where why how all any both each few more most "
    "other some such no nor not only own same so than too very s t can will just don should now").split())


def eda_words(sentence: str) -> list[str]:
    """The words EDA's tokenizer keeps of ``sentence`` (lowercase a-z runs)."""
    return _NOT_LETTER.sub(" ", sentence.translate(_DROPPED).lower()).split()


def whitespace_words(sentence: str) -> list[str]:
    """Every non-space run, lowercased: for sentences already tokenized."""
    return sentence.lower().split()


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"eda": eda_words, "whitespace": whitespace_words}

_SEPARATOR = "\x00"
_NOT_LETTER_OR_SEPARATOR = re.compile(r"[^a-z\x00]+")


def words_of_all(tokenizer: str, sentences: list[str]) -> list[list[str]]:
    """``TOKENIZERS[tokenizer]`` of every sentence, in one pass over them joined by a NUL (a few calls into C
    for the batch instead of a few per sentence); a batch whose sentences hold a NUL themselves goes one by one."""
    joined = _SEPARATOR.join(sentences)
    if joined.count(_SEPARATOR) != len(sentences) - 1:
        return list(map(TOKENIZERS[tokenizer], sentences))
    if tokenizer == "eda":
        joined = _NOT_LETTER_OR_SEPARATOR.sub(" ", joined.translate(_DROPPED).lower())
    else:
        joined = joined.lower()
    return [part.split() for part in joined.split(_SEPARATOR)]
