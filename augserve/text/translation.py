"""Round trips through a pivot language with Debian's apertium (English -> pivot -> English): paraphrases for
back-translation, many sentences per pair of apertium processes.

Sentences travel in apertium's own stream format with null flushes (``apertium -f none -z``): each sentence is
deformatted as ``apertium-destxt`` deformats a text (reserved characters escaped, ``~`` kept as format, the
".[]" that ends a text) and followed by a NUL, at which every stage of both pipelines finishes what it holds
and flushes. A NUL cannot be text, so no sentence (quotes, brackets, digits, unknown words, a lone ".") is
taken for a separator, N sentences in give N out, and no transfer rule joins words of two sentences (across a
plain newline one does: "New York is big" above "city" goes into Spanish as "Nueva York es ciudad" above
"grande"). Only apertium's tagger still reads across a NUL: in a few sentences out of a hundred it picks
another part of speech for a word, and so another translation, than for the sentence alone. The paraphrase
store keeps the first translation, so a sentence's paraphrase does not change once made.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import threading
import unicodedata
from typing import Iterator

from tqdm import tqdm

from augserve.spec import shown
from augserve.text.batch import MAX_CHARS

SOURCE = "eng"
DEFAULT_PIVOT = "spa"
CHUNK_SENTENCES = 512  # sentences per pair of processes (a pair starts in ~0.3 s, then does 100-200 a second)
CHUNK_CHARS = 1 << 16  # and at most this many characters (a longer sentence goes alone)
TIMEOUT_SECONDS = 120.0  # per chunk, both directions; apertium does a full chunk in a few seconds
MAX_RUNNING = 2  # round trips at once in a process (each is two pipelines of a dozen processes)

_RESERVED = re.compile(r"([\\\[\]^$/@<>{}])")  # escaped by a backslash, as apertium-destxt does
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_FORMAT = re.compile(r"\\(.)|\.\[\]|[\[\]]", re.DOTALL)  # an escape, the text's end mark, a format bracket
_running = threading.BoundedSemaphore(MAX_RUNNING)


class TranslatorMissing(OSError):
    """apertium, or its language pair, is not installed."""


@functools.cache
def _directions() -> frozenset[str]:
    program = shutil.which("apertium")
    if program is None:
        raise TranslatorMissing("back-translation needs Debian's apertium, which is not installed: "
                                "apt-get install apertium-eng-spa (the English-Spanish pair and apertium itself)")
    listed = subprocess.run([program, "-l"], capture_output=True, text=True, timeout=30)
    return frozenset(listed.stdout.split())


def check(pivot: str = DEFAULT_PIVOT) -> None:
    """Raise ``TranslatorMissing`` unless apertium translates English to ``pivot`` and back."""
    missing = [pair for pair in (f"{SOURCE}-{pivot}", f"{pivot}-{SOURCE}") if pair not in _directions()]
    if missing:
        have = ", ".join(sorted(_directions())) or "none"
        raise TranslatorMissing(f"apertium has no {missing[0]} pair (it has: {have}): apt-get install "
                                f"apertium-{SOURCE}-{pivot}")


def _clean(sentence: str) -> str:
    """A sentence as it is translated: one line, control characters and runs of spaces made one space."""
    return " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", sentence)).split())


def _deformat(sentence: str) -> str:
    return _RESERVED.sub(r"\\\1", sentence).replace("~", "[~]") + ".[]\0"


def _reformat(piece: str) -> str:
    return " ".join(_FORMAT.sub(lambda match: match.group(1) or "", piece).split())


def _chunks(sentences: list[str]) -> Iterator[list[str]]:
    chunk, chars = [], 0
    for sentence in sentences:
        if chunk and (len(chunk) == CHUNK_SENTENCES or chars + len(sentence) > CHUNK_CHARS):
            yield chunk
            chunk, chars = [], 0
        chunk.append(sentence)
        chars += len(sentence)
    if chunk:
        yield chunk


def _translate(chunk: list[str], pivot: str) -> list[str]:
    """One chunk there and back: one shell pipeline of the two apertium directions, killed whole on timeout."""
    data = "".join(map(_deformat, chunk)).encode()
    command = 'set -o pipefail; apertium -f none -z -u "$1" | apertium -f none -z -u "$2"'
    with _running:
        process = subprocess.Popen(["bash", "-c", command, "apertium", f"{SOURCE}-{pivot}", f"{pivot}-{SOURCE}"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        try:
            out, err = process.communicate(data, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise TimeoutError(f"apertium took more than {TIMEOUT_SECONDS:g} s (TIMEOUT_SECONDS) to translate "
                               f"{len(chunk)} sentences of {len(data)} bytes; is the machine overloaded?") from None
    if process.returncode:
        said = err.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"apertium {SOURCE}-{pivot}-{SOURCE} failed (exit {process.returncode}): "
                           f"{said[-1] if said else 'no message'}")
    pieces = out.decode(errors="replace").split("\0")
    if len(pieces) <= len(chunk) or any(pieces[len(chunk):]):  # each stage adds empty ones at the end
        raise RuntimeError(f"apertium returned {len(pieces) - 1} NUL-ended pieces for {len(chunk)} sentences: this "
                           "apertium does not keep -z null flushes, which back-translation relies on")
    return [_reformat(piece) for piece in pieces[:len(chunk)]]


class TooLong(ValueError):
    """A sentence longer than apertium is given, once cleaned (NFC can lengthen one); ``index``: which."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


def round_trips(sentences: list[str], pivot: str = DEFAULT_PIVOT, progress: bool = False) -> Iterator[list[str]]:
    """The paraphrases of ``sentences``, a chunk at a time and in order (a caller can keep each as it comes)."""
    check(pivot)
    cleaned = [_clean(sentence) for sentence in sentences]
    for index, sentence in enumerate(cleaned):
        if len(sentence) > MAX_CHARS:
            raise TooLong(f"sentence {index} has {len(sentence)} characters, more than {MAX_CHARS} (MAX_CHARS): "
                          f"{shown(sentence)}; split it", index)
    with tqdm(total=len(cleaned), desc=f"translating via {pivot}", unit="sentence", disable=not progress) as bar:
        for chunk in _chunks(cleaned):
            yield _translate(chunk, pivot)
            bar.update(len(chunk))


def round_trip(sentences: list[str], pivot: str = DEFAULT_PIVOT, progress: bool = False) -> list[str]:
    """Each sentence translated to ``pivot`` and back: its paraphrase, on one line."""
    return [paraphrase for chunk in round_trips(sentences, pivot, progress) for paraphrase in chunk]
