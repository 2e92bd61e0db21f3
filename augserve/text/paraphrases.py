"""The paraphrases back-translation reads: each sentence's round trip through a pivot language, kept by the
sentence's EDA words (``key``), so case, punctuation and spacing do not make it another sentence.

Translating is slow (apertium does 100 to 200 sentences a second), so a served text dataset's paraphrases
are made ahead, by ``augserve datasets translate CONFIG NAME``, into a file beside it that the server reads at
start-up. A sentence the store lacks is translated when first asked for and kept, in process; a server does
so only when started with ``--translate`` (``set_translating``), so by default no client's sentences keep
its device worker waiting on apertium. The first paraphrase stored for a sentence is the one it keeps.

The file: UTF-8 text, one ``key<TAB>paraphrase`` line per sentence.
"""

from __future__ import annotations

import os
import pathlib
import threading

from augserve.spec import shown
from augserve.text import translation
from augserve.text.tokens import eda_words

SUFFIX = ".paraphrases.tsv"  # a dataset's paraphrase file is its path with this added
MAX_PARAPHRASES = 5_000_000  # sentences the store holds
MAX_CHARACTERS = 1 << 30  # characters of the keys and paraphrases it holds together (a few GiB of memory)
MAX_FILE_BYTES = 1 << 30  # largest paraphrase file read

_lock = threading.Lock()
_store: dict[str, str] = {}
_characters = 0
_translating = True


def key(sentence: str) -> str:
    """What a sentence is stored under: its EDA words joined by single spaces."""
    return " ".join(eda_words(sentence))


def set_translating(on: bool) -> None:
    """Whether ``translating()`` says to translate the sentences the store lacks (a server's ``--translate``)."""
    global _translating
    _translating = on


def translating() -> bool:
    """True in process unless ``set_translating(False)``; a server says what its ``--translate`` says."""
    return _translating


def _check_room(new: int, characters: int, where: str) -> None:
    if len(_store) + new > MAX_PARAPHRASES:
        raise ValueError(f"{where}: {new} more paraphrases would pass the {MAX_PARAPHRASES} a process keeps "
                         f"(MAX_PARAPHRASES; {len(_store)} kept already); serve fewer sentences")
    if _characters + characters > MAX_CHARACTERS:
        raise ValueError(f"{where}: {characters} more characters of paraphrases would pass the {MAX_CHARACTERS} a "
                         f"process keeps (MAX_CHARACTERS; {_characters} kept already); serve fewer or shorter "
                         "sentences")


def add(paraphrases: dict[str, str], where: str) -> int:
    """Keep ``paraphrases`` (key -> paraphrase) where the store has none yet; how many were new."""
    global _characters
    with _lock:
        new = [k for k in paraphrases if k not in _store]
        characters = sum(len(k) + len(paraphrases[k]) for k in new)
        _check_room(len(new), characters, where)
        _store.update((k, paraphrases[k]) for k in new)
        _characters += characters
        return len(new)


def lookup(sentences: list[str], translate: bool) -> list[str]:
    """The paraphrase of each sentence; those the store lacks translated now (in one round trip, then kept) when
    ``translate``, else a ValueError naming the first. A sentence without a word is its own paraphrase."""
    keys = [key(sentence) for sentence in sentences]
    with _lock:
        found = [_store.get(k) if k else sentence for k, sentence in zip(keys, sentences)]
    missing = [i for i, paraphrase in enumerate(found) if paraphrase is None]
    if not missing:
        return found
    if not translate:
        first = missing[0]
        raise ValueError(f"sample {first}: no paraphrase of {shown(sentences[first])} is stored ({len(missing)} of "
                         f"the {len(sentences)} sentences have none); serve it as a text dataset and run `augserve "
                         "datasets translate CONFIG NAME`, or start the server with --translate")
    todo: dict[str, str] = {}
    for i in missing:
        todo.setdefault(keys[i], sentences[i])  # one translation per key: its first sentence's
    with _lock:  # a paraphrase about as long as its sentence: refused before the slow part, not after it
        _check_room(len(todo), sum(len(k) + 2 * len(sentence) for k, sentence in todo.items()), "translating back")
    try:
        translated = translation.round_trip(list(todo.values()))
    except translation.TooLong as error:  # numbered among the sentences translated: name the caller's
        first = next(i for i in missing if keys[i] == list(todo)[error.index])
        raise ValueError(f"sample {first}: {str(error).partition(' has ')[2]}") from None
    add(dict(zip(todo, translated)), "translating back")
    with _lock:
        return [_store[keys[i]] if paraphrase is None else paraphrase for i, paraphrase in enumerate(found)]


def path_for(data: str | os.PathLike) -> pathlib.Path:
    """The paraphrase file of a dataset at ``data`` (a file or a folder): beside it, named after it."""
    return pathlib.Path(str(data).rstrip("/") + SUFFIX)


def load(path: str | os.PathLike) -> dict[str, str]:
    """A paraphrase file's key -> paraphrase; a line that is not ``key<TAB>paraphrase`` is named."""
    size = os.stat(path).st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is {size} bytes, more than the {MAX_FILE_BYTES} a paraphrase file may have "
                         "(MAX_FILE_BYTES); serve fewer sentences from one dataset")
    with open(path, "rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    paraphrases: dict[str, str] = {}
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode()
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} line {number}: not UTF-8 (byte {raw[error.start]:#04x} at column "
                             f"{error.start + 1})") from None
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0] or key(fields[0]) != fields[0]:
            raise ValueError(f"{path} line {number}: expected a sentence's EDA words (lowercase a-z, single "
                             f"spaces), a tab and its paraphrase, got {shown(line)}; remove the line, or the file "
                             "to translate again")
        paraphrases.setdefault(fields[0], fields[1])
    return paraphrases


def save(path: str | os.PathLike, paraphrases: dict[str, str], append: bool = False) -> None:
    """Write ``paraphrases`` as a paraphrase file (after what it holds, with ``append``)."""
    text = "".join(f"{k}\t{' '.join(paraphrase.split())}\n" for k, paraphrase in paraphrases.items())
    with open(path, "a" if append else "w", encoding="utf-8") as file:
        file.write(text)
