"""Sentences on the wire: ``AugmentRequest.texts`` read as str, their limits checked before anything is tokenized.

Sentences travel as bytes, so one that is not UTF-8 is refused by its index (a string field would fail the parse
of the whole message). A request holds at most --max-samples sentences, each at most ``MAX_SENTENCE_BYTES``, all
at most ``MAX_TEXT_BYTES``: the pipeline tokenizes them as the request is checked (counting each one's words
against its ``max_words``), on the event loop, so a request's text is kept to what that takes a moment for.
"""

from __future__ import annotations

from typing import Sequence

from augserve.modality import Modality
from augserve.pipeline import Pipeline
from augserve.server.errors import Refused, invalid
from augserve.text.batch import MAX_CHARS

MAX_SENTENCE_BYTES = 4 * MAX_CHARS  # the most MAX_CHARS characters (what a text pipeline takes) are in UTF-8
MAX_TEXT_BYTES = 4 << 20  # a request's sentences together: 1,024 sentences of 512 words fit


def read_texts(texts: Sequence[bytes], max_samples: int) -> list[str]:
    """The request's sentences, decoded, or INVALID_ARGUMENT naming the limit or the first bad one."""
    if len(texts) > max_samples:
        raise invalid(f"texts: expected 1 to {max_samples} sentences (--max-samples), got {len(texts)}")
    total = sum(map(len, texts))
    if total > MAX_TEXT_BYTES:
        raise invalid(f"texts: {total} bytes in all; the limit is {MAX_TEXT_BYTES} a request (MAX_TEXT_BYTES): "
                      "send fewer or shorter sentences per request")
    sentences = []
    for number, raw in enumerate(texts):
        if len(raw) > MAX_SENTENCE_BYTES:
            raise invalid(f"texts[{number}]: {len(raw)} bytes; the limit is {MAX_SENTENCE_BYTES} a sentence "
                          "(MAX_SENTENCE_BYTES): split the text")
        try:
            sentences.append(raw.decode())
        except UnicodeDecodeError as error:
            raise invalid(f"texts[{number}]: not UTF-8 (byte {raw[error.start]:#04x} at offset {error.start}); "
                          "send each sentence encoded as UTF-8") from None
    return sentences


def modality_refused(pipeline: Pipeline, field: str, sentences: bool) -> Refused | None:
    """Sentences for a pipeline that is not a text one, or other samples for a text one, refused naming ``field``."""
    if sentences == (pipeline.modality == Modality.TEXT):
        return None
    if sentences:
        return invalid(f"{field}: sentences need a text pipeline (text steps such as eda, or modality: text), not "
                       f"one for {pipeline.modality or 'generic'} batches")
    return invalid(f"{field}: the pipeline is a text pipeline: it takes sentences (texts), not these samples; send "
                   "sentences, or name a pipeline for them")
