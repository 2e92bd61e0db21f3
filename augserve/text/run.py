"""A text pipeline's run: sentences tokenized and numbered, each step's edit on the ids, the sentences written back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from augserve.labels import as_soft_labels
from augserve.random import SampleRng
from augserve.spec import Choice, Name, Number, SpecError, did_you_mean, shown
from augserve.steps.base import public
from augserve.steps.text import TextStep
from augserve.text import vocabularies
from augserve.text.batch import MAX_WORDS, TextBatch, encode
from augserve.text.tokens import TOKENIZERS

OPTIONS = {"tokenizer": Choice("eda", options=tuple(TOKENIZERS), doc="how a sentence becomes words"),
           "vocabulary": Name(None, doc="the word list that word-id batches index (vocabularies.register)"),
           "max_words": Number(MAX_WORDS, low=1, high=MAX_WORDS, integer=True,
                               doc="most words a sentence may have: longer ones are refused, and edits that "
                                   "grow one past it are cut")}


@dataclass(frozen=True)
class TextOptions:
    """How a text pipeline reads sentences: the spec's ``tokenizer`` and ``max_words``."""

    tokenizer: str = "eda"
    max_words: int = MAX_WORDS
    vocabulary: str | None = None

    @classmethod
    def parse(cls, given: dict[str, Any]) -> "TextOptions":
        values = {}
        for name, value in given.items():
            field = OPTIONS[name]
            try:
                values[name] = field.convert(value)
            except ValueError:
                raise SpecError(f"pipeline: field '{name}': expected {field.expected()}, got {shown(value)}") from None
        return cls(**values)

    def encode(self, sentences: Any, device: torch.device | str = "cpu", lengths: Any = None,
               field: str = "x") -> TextBatch:
        """The sentences (or word ids (B, L) of the named vocabulary, with each row's ``lengths``) as a batch,
        or ValueError naming the first that is not one (sentences as ``field[i]``)."""
        if isinstance(sentences, (torch.Tensor, np.ndarray)):
            return self._ids(torch.as_tensor(sentences), lengths)
        if lengths is not None:
            raise ValueError("lengths: sentences carry their own; give lengths with word ids only")
        return encode(sentences, self.tokenizer, self.max_words, device, field)

    def _ids(self, ids: torch.Tensor, lengths: Any) -> TextBatch:
        if self.vocabulary is None:
            raise ValueError("x: word ids need the vocabulary they index: name it in the spec ('vocabulary'), "
                             "or send sentences (a list of str)")
        try:
            vocabulary = vocabularies.VOCABULARIES.get(self.vocabulary)
        except KeyError:
            raise ValueError(f"vocabulary: {vocabularies.VOCABULARIES.unknown_message(self.vocabulary)}") from None
        if ids.dtype not in (torch.int64, torch.int32) or ids.dim() != 2 or not ids.numel():
            raise ValueError(f"x: expected word ids (B, L) int64, got {ids.dtype} of shape {tuple(ids.shape)}")
        if ids.shape[1] > self.max_words:
            raise ValueError(f"x: {ids.shape[1]} words per row; the limit is {self.max_words} (max_words)")
        lengths = torch.full(ids.shape[:1], ids.shape[1]) if lengths is None else torch.as_tensor(lengths)
        if lengths.dtype not in (torch.int64, torch.int32) or lengths.shape != ids.shape[:1]:
            raise ValueError(f"lengths: expected {ids.shape[0]} integers (words per row), got {lengths.dtype} of "
                             f"shape {tuple(lengths.shape)}")
        short = ((lengths < 1) | (lengths > ids.shape[1])).nonzero()
        if len(short):
            raise ValueError(f"lengths[{int(short[0])}]: each must lie in [1, {ids.shape[1]}], got "
                             f"{int(lengths[short[0]])}")
        return vocabulary.batch(ids.long(), lengths.to(ids.device, torch.int64))


def unknown_option(name: str) -> SpecError:
    return SpecError(f"pipeline: unknown field {shown(name)}{did_you_mean(name, ('modality', 'steps', *OPTIONS))} "
                     f"(allowed: modality, steps, and for text {', '.join(OPTIONS)})")


def check_order(steps: list) -> None:
    """A step that reads the sentences as sent (back-translation) must come first: later they are edited."""
    for number, step in enumerate(steps):
        if number and getattr(step, "reads_originals", False):
            raise SpecError(f"{step.where}: reads the sentences as they were sent, so it must be the pipeline's "
                            "first step")


def run(steps: list, options: TextOptions, batch: TextBatch, labels: Any, seed: int | torch.Tensor,
        keys: torch.Tensor, num_classes: int | None,
        reports: bool = True) -> tuple[list[str], torch.Tensor | None, list[dict], torch.Tensor]:
    """``batch`` through ``steps`` with one key per sentence: the sentences (ids of a named vocabulary's batch),
    soft labels, what each step did (without ``reports``, its counts alone) and each sentence's words."""
    device, size = batch.ids.device, len(batch)
    rng = SampleRng(seed.to(device) if isinstance(seed, torch.Tensor) else seed, keys.to(device))
    soft = None if labels is None else as_soft_labels(labels, size, num_classes, device)
    params = []
    for slot, step in enumerate(steps):
        stream = rng.fork(slot)
        if isinstance(step, TextStep):
            batch, drawn = step.edit(batch, stream, options, reports)
        else:  # label smoothing: the one other step a text pipeline takes
            drawn = step.draw(stream, None)
            soft = None if soft is None else step.relabel(soft, drawn)
        params.append({"op": step.op, **public(drawn)})
    return batch.ids if batch.closed else batch.sentences(), soft, params, batch.lengths
