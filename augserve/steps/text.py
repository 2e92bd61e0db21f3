"""EDA's word operations (Wei & Zou 2019) on batches of sentences, per sample and replayable by (seed, key).

Each step edits a ``TextBatch`` (word ids and lengths) with batched tensor ops and reports, per sample, how
many changes (``changed``), the new ``lengths`` and the words lost to ``max_words`` (``cut``), and, when
``reports`` is on, what it changed: the words replaced, inserted or deleted and the positions swapped (positions
are in the sentence the step was given). Those lists are Python objects per change, a large part of a call on
word ids, so a caller that does not read them (a server request without return_params) leaves them out.
The rules are EDA's reference code's; docs/pipelines.md says where augserve differs and why.
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from typing import ClassVar

import numpy as np
import torch

from augserve.modality import Modality
from augserve.ops import text as ops
from augserve.random import Draw, SampleRng
from augserve.spec import Name, Number, SpecError
from augserve.steps.base import LENGTHS, Params, PerSample, Step, register
from augserve.text import masked_lm, paraphrases, wordnet
from augserve.text.batch import SynonymTable, TextBatch
from augserve.text.tokens import TOKENIZERS

ALPHA = Number(0.1, low=0.0, high=1.0, neutral=0.0, doc="fraction of the sentence's words changed: "
                                                            "n = max(1, int(alpha * words)), none at 0")
SWAP_TRIES = 3  # EDA gives a swap up when three draws of the second position miss (its fourth is never used)


class TextStep(Step):
    """A step on sentences: ``edit`` takes the batch and the samples' streams and returns the edited batch."""

    modalities = (Modality.TEXT,)
    reads_originals: ClassVar[bool] = False  # reads the sentences as sent: must come first

    @abstractmethod
    def edit(self, batch: TextBatch, rng: SampleRng, options, reports: bool) -> tuple[TextBatch, Params]:
        """The batch with this step's edits and what it changed per sample (``changed``, ``lengths``, ``cut``, and
        with ``reports`` the changes themselves); ``options`` says how the pipeline reads sentences
        (``TextOptions``: tokenizer, max_words)."""

    def apply(self, x, params):
        raise TypeError(f"{self.where}: a text step edits sentences: call the pipeline on a list of str")


def _needs_wordnet(where: str) -> None:
    """A step that reads WordNet's synonyms is refused at its spec where no WordNet is installed."""
    why = wordnet.missing()
    if why:
        raise SpecError(f"{where}: reads WordNet's synonyms: {why}")


class SynonymStep(TextStep):
    """A step that reads WordNet's synonyms (at alpha 0 it reads none)."""

    def check(self):
        if self.args["alpha"]:
            _needs_wordnet(self.where)


def _count(alpha: float, lengths: torch.Tensor) -> torch.Tensor:
    """EDA's n per sample: max(1, int(alpha * words)), in float64 as Python computes it; none for alpha 0 (EDA
    then leaves the operation out)."""
    return (lengths.double() * alpha).floor().long().clamp(min=1 if alpha > 0 else 0)


def _written(batch: TextBatch, rows: torch.Tensor, lengths: torch.Tensor, cut: torch.Tensor,
             changes: dict[str, PerSample], changed: torch.Tensor) -> tuple[TextBatch, Params]:
    return batch.with_ids(rows, lengths), {"changed": changed, LENGTHS: lengths, "cut": cut, **changes}


def _by_sample(samples: torch.Tensor, size: int, entries: list) -> PerSample:
    """Entries listed with their sample numbers (ascending) as one list per sample."""
    listed = iter(entries)
    return PerSample(list(itertools.islice(listed, count))
                     for count in np.bincount(samples.cpu().numpy(), minlength=size).tolist())


def _with_synonyms(batch: TextBatch, table: SynonymTable, phrase: torch.Tensor, keep: torch.Tensor, options,
                   report: str | None, where: torch.Tensor, positions: torch.Tensor, synonyms: torch.Tensor,
                   old: torch.Tensor | None = None) -> tuple[TextBatch, Params]:
    """The kept entries of ``phrase`` written out (a synonym phrase as its words), and under ``report`` (None:
    not asked) per sample each change: [position, old word (when given), synonym] at the entries ``where``
    marks (B, S) of ``positions``, ``old`` and ``synonyms`` (B, S)."""
    rows, lengths, cut = ops.expand(phrase, keep, table.phrases, table.phrase_lengths, options.max_words)
    changes = {}
    if report is not None:
        sample, slot = where.nonzero(as_tuple=True)
        chosen = synonyms[sample, slot]
        columns = [positions[sample, slot].tolist(),
                   *([batch.words_of(old[sample, slot]).tolist()] if old is not None else []),
                   batch.joined(table.phrases[chosen], table.phrase_lengths[chosen])]
        changes[report] = _by_sample(sample, len(batch), [list(entry) for entry in zip(*columns)])
    return _written(batch, rows, lengths, cut, changes, where.sum(1))


@register
class SynonymReplacement(SynonymStep):
    """n distinct words that are not stop words, each replaced everywhere by one of its WordNet synonyms."""

    op = "synonym_replacement"
    fields = {"alpha": ALPHA}

    class Draw(Draw):
        ORDER = 1  # which words: the n candidates with the lowest draws
        SYNONYM = 2  # which of a word's synonyms

    def edit(self, batch, rng, options, reports):
        ids, lengths, table = batch.ids, batch.lengths, batch.synonyms()
        width = ids.shape[1]
        inside = ops.valid(lengths, width)
        first = ops.first_positions(ids, inside)
        at_first = first == torch.arange(width, device=ids.device)
        candidate = inside & at_first & ~table.stop[ids] & (table.count[ids] > 0)
        chosen = ops.lowest(rng.uniform(self.Draw.ORDER, n=width), candidate, _count(self.args["alpha"], lengths))
        synonym = ops.pick(table.start[ids], table.count[ids], rng.uniform(self.Draw.SYNONYM, n=width), table.phrase)
        replaced = chosen.gather(1, first)
        phrase = torch.where(replaced, synonym.gather(1, first), ids)
        positions = torch.arange(width, device=ids.device).expand_as(ids)
        return _with_synonyms(batch, table, phrase, inside, options, "replaced" if reports else None, chosen,
                              positions, synonym, old=ids)


@register
class RandomInsertion(SynonymStep):
    """n times, a synonym of a random word (one that has synonyms) inserted before a random word."""

    op = "random_insertion"
    fields = {"alpha": ALPHA}

    class Draw(Draw):
        SOURCE = 1  # which word's synonym
        SYNONYM = 2  # which synonym
        WHERE = 3  # before which word

    def edit(self, batch, rng, options, reports):
        ids, lengths, table = batch.ids, batch.lengths, batch.synonyms()
        width = ids.shape[1]
        most = max(1, int(self.args["alpha"] * width))  # n of the longest sentence: the static number of slots
        inside = ops.valid(lengths, width)
        has = inside & (table.count[ids] > 0)
        running = torch.cumsum(has, dim=1)
        sources = running[:, -1]
        nth = (rng.uniform(self.Draw.SOURCE, n=most) * sources[:, None]).long()
        source = torch.searchsorted(running, nth + 1).clamp(max=width - 1)
        word = ids.gather(1, source)
        synonym = ops.pick(table.start[word], table.count[word], rng.uniform(self.Draw.SYNONYM, n=most), table.phrase)
        before = (rng.uniform(self.Draw.WHERE, n=most) * lengths[:, None]).long()
        active = (torch.arange(most, device=ids.device)[None, :] < _count(self.args["alpha"], lengths)[:, None]) \
            & (sources[:, None] > 0)
        order = torch.cat([2 * torch.arange(width, device=ids.device).expand_as(ids) + 1, 2 * before], dim=1)
        order = torch.sort(order, dim=1, stable=True).indices  # an insertion goes before its word, in draw order
        phrase = torch.cat([ids, synonym], dim=1).gather(1, order)
        keep = torch.cat([inside, active], dim=1).gather(1, order)
        return _with_synonyms(batch, table, phrase, keep, options, "inserted" if reports else None, active,
                              before, synonym)


@register
class RandomSwap(TextStep):
    """n times, two random positions swapped (given up, as EDA does, when three draws miss a second position)."""

    op = "random_swap"
    fields = {"alpha": ALPHA}

    class Draw(Draw):
        FIRST = 1
        SECOND = 2  # SWAP_TRIES draws per swap

    def edit(self, batch, rng, options, reports):
        ids, lengths = batch.ids, batch.lengths
        size, width = ids.shape
        most = max(1, int(self.args["alpha"] * width))
        first = (rng.uniform(self.Draw.FIRST, n=most) * lengths[:, None]).long()
        tries = (rng.uniform(self.Draw.SECOND, n=most * SWAP_TRIES).view(size, most, SWAP_TRIES)
                 * lengths[:, None, None]).long()
        differs = tries != first[:, :, None]
        second = tries.gather(2, differs.to(torch.int8).argmax(2, keepdim=True)).squeeze(2)
        active = differs.any(2) & (torch.arange(most, device=ids.device)[None, :]
                                   < _count(self.args["alpha"], lengths)[:, None])
        order = torch.arange(width, device=ids.device).repeat(size, 1)
        for k in range(most):  # swaps compose in order: a loop over the n of the longest sentence, not samples
            a, b = first[:, k:k + 1], second[:, k:k + 1]
            at_a, at_b = order.gather(1, a), order.gather(1, b)
            swap = active[:, k:k + 1]
            order.scatter_(1, a, torch.where(swap, at_b, at_a))
            order.scatter_(1, b, torch.where(swap, at_a, at_b))
        changes = {}
        if reports:
            sample, slot = active.nonzero(as_tuple=True)
            entries = torch.stack([first[sample, slot], second[sample, slot]], 1).tolist()
            changes["swapped"] = _by_sample(sample, size, entries)
        return _written(batch, ids.gather(1, order), lengths, torch.zeros_like(lengths), changes, active.sum(1))


@register
class RandomDeletion(TextStep):
    """Each word dropped with probability p; a sentence of one word stays, and one that would lose every word
    keeps one at random."""

    op = "random_deletion"
    fields = {"p": Number(0.1, low=0.0, high=1.0, neutral=0.0, doc="probability that a word is dropped")}

    class Draw(Draw):
        DROP = 1
        SURVIVOR = 2  # the word kept when every one drew a drop

    def edit(self, batch, rng, options, reports):
        ids, lengths = batch.ids, batch.lengths
        width = ids.shape[1]
        inside = ops.valid(lengths, width)
        keep = inside & ((rng.uniform(self.Draw.DROP, n=width) >= self.args["p"]) | (lengths[:, None] == 1))
        survivor = (rng.uniform(self.Draw.SURVIVOR) * lengths).long()
        keep |= ~keep.any(1, keepdim=True) & (torch.arange(width, device=ids.device)[None, :] == survivor[:, None])
        order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # kept words first, in order
        new_lengths = keep.sum(1)
        rows = ids.gather(1, order)[:, :max(int(new_lengths.max()), 1)]
        rows = torch.where(ops.valid(new_lengths, rows.shape[1]), rows, 0)
        dropped = inside & ~keep
        changes = {}
        if reports:
            sample, position = dropped.nonzero(as_tuple=True)
            entries = [[p, w] for p, w in zip(position.tolist(), batch.words_of(ids[sample, position]).tolist())]
            changes["deleted"] = _by_sample(sample, len(batch), entries)
        return _written(batch, rows, new_lengths, torch.zeros_like(lengths), changes, dropped.sum(1))


@register
class Eda(TextStep):
    """One of EDA's four operations per sample, each with probability 1/4 (EDA's augmenter as a policy)."""

    op = "eda"
    fields = {"alpha_sr": ALPHA, "alpha_ri": ALPHA, "alpha_rs": ALPHA,
              "p_rd": Number(0.1, low=0.0, high=1.0, neutral=0.0, doc="random deletion's p")}
    OPERATIONS = ("synonym_replacement", "random_insertion", "random_swap", "random_deletion")

    class Draw(Draw):
        OPERATION = 1

    def check(self):
        alphas = ("alpha_sr", "alpha_ri", "alpha_rs", "p_rd")
        if self.args["alpha_sr"] or self.args["alpha_ri"]:
            _needs_wordnet(self.where)
        self.operations = [STEPS_BY_OP[op](f"{self.where} {op}", **{("p" if field == "p_rd" else "alpha"):
                                                                   self.args[field]})
                           for op, field in zip(self.OPERATIONS, alphas)]

    def edit(self, batch, rng, options, reports):
        size = len(batch)
        which = rng.index(self.Draw.OPERATION, len(self.operations))
        parts = []
        for number, step in enumerate(self.operations):  # grouped: each operation once, on its samples
            rows = (which == number).nonzero().flatten()
            if len(rows):
                part = batch.with_ids(batch.ids[rows], batch.lengths[rows])
                parts.append((rows, *step.edit(part, rng.select(rows).fork(number + 1), options, reports)))
        width = max(part.ids.shape[1] for _, part, _ in parts)
        ids = torch.zeros(size, width, dtype=torch.int64, device=batch.ids.device)
        lengths, cut, changed = (torch.zeros(size, dtype=torch.int64, device=batch.ids.device) for _ in range(3))
        changes = {name: PerSample([] for _ in range(size))
                   for name in ("replaced", "inserted", "swapped", "deleted")} if reports else {}
        for rows, part, drawn in parts:
            ids[rows, :part.ids.shape[1]] = part.ids
            lengths[rows], cut[rows], changed[rows] = drawn[LENGTHS], drawn["cut"], drawn["changed"]
            for name in changes:
                for row, entry in zip(rows.tolist(), drawn.get(name, ())):
                    changes[name][row] = entry
        if reports:
            changes["operation"] = PerSample(np.asarray(self.OPERATIONS, dtype=object)[which.cpu().numpy()].tolist())
        return _written(batch, ids, lengths, cut, changes, changed)


STEPS_BY_OP = {step.op: step for step in (SynonymReplacement, RandomInsertion, RandomSwap, RandomDeletion)}


@register
class BackTranslation(TextStep):
    """The sentence, with probability p, replaced by its round trip through a pivot language (apertium): looked
    up among the paraphrases a server keeps for its text datasets, or translated now where translation is on
    (in process; a server started with --translate). Reads the sentences as sent, so it comes first."""

    op = "back_translation"
    reads_originals = True
    fields = {"p": Number(0.5, low=0.0, high=1.0, neutral=0.0, doc="probability that a sentence is replaced")}

    class Draw(Draw):
        APPLY = 1

    def edit(self, batch, rng, options, reports):
        if batch.closed:
            raise ValueError(f"{self.where}: translates sentences: send text, not word ids")
        applied = rng.uniform(self.Draw.APPLY) < self.args["p"]
        rows = applied.nonzero().flatten()
        chosen = [batch.originals[row] for row in rows.tolist()]
        try:
            found = paraphrases.lookup(chosen, translate=paraphrases.translating()) if chosen else []
        except ValueError as error:  # "sample i" counts the chosen ones: name the batch's
            raise ValueError(f"{self.where}: {_renumbered(str(error), rows, batch.called)}") from None
        tokenize = TOKENIZERS[options.tokenizer]
        written = [tokenize(text)[:options.max_words] or tokenize(original)
                   for text, original in zip(found, chosen)]
        new_ids, new_lengths = batch.add_words(written)
        width = max(batch.ids.shape[1], new_ids.shape[1])
        ids = torch.nn.functional.pad(batch.ids, (0, width - batch.ids.shape[1]))
        ids[rows] = torch.nn.functional.pad(new_ids, (0, width - new_ids.shape[1]))
        lengths = batch.lengths.clone()
        lengths[rows] = new_lengths
        cut = torch.zeros_like(lengths)
        cut[rows] = torch.tensor([max(len(tokenize(text)) - options.max_words, 0) for text in found],
                                 dtype=torch.int64, device=cut.device)
        changes = {}
        if reports:
            changes["paraphrase"] = PerSample("" for _ in range(len(batch)))
            for row, words in zip(rows.tolist(), written):
                changes["paraphrase"][row] = " ".join(words)
        return _written(batch, ids[:, :max(int(lengths.max()), 1)], lengths, cut, changes,
                        applied.long())


def _renumbered(message: str, rows: torch.Tensor, called: str) -> str:
    """A lookup's "sample i" (i among the sentences looked up) as the batch's sample, named as its caller does."""
    head, _, rest = message.partition(":")
    number = head.removeprefix("sample ")
    return f"{called}[{rows[int(number)].item()}]:{rest}" if number.isdigit() else message


@register
class ContextualSubstitution(TextStep):
    """Each word, with probability p, masked and refilled by a masked language model: one of the model's top-k
    whole words at that position (not the word itself), drawn by the sample's own uniform (Kobayashi 2018;
    nlpaug's ContextualWordEmbsAug substitute)."""

    op = "contextual_substitution"
    fields = {"p": Number(0.15, low=0.0, high=1.0, neutral=0.0, doc="probability that a word is refilled"),
              "top_k": Number(10, low=1, high=1000, integer=True, doc="candidates a refill is drawn from"),
              "model": Name(doc="a masked language model the server names (masked_lm.register in process)")}

    class Draw(Draw):
        MASK = 1
        CHOICE = 2

    def check(self):
        if not masked_lm.MODELS.known(self.args["model"]):
            raise SpecError(f"{self.where}: field 'model': {masked_lm.MODELS.unknown_message(self.args['model'])}")

    def edit(self, batch, rng, options, reports):
        ids, lengths = batch.ids, batch.lengths
        width = ids.shape[1]
        try:
            model = masked_lm.named(self.args["model"], ids.device)
        except (ValueError, ImportError) as error:
            raise ValueError(f"{self.where}: field 'model': {error}") from None
        mask = ops.valid(lengths, width) & (rng.uniform(self.Draw.MASK, n=width) < self.args["p"])
        added, new_ids = model.fill(batch.words, ids, lengths, mask, rng.uniform(self.Draw.CHOICE, n=width),
                                    self.args["top_k"])
        if batch.closed:  # a refill outside the vocabulary keeps the word it would have replaced
            new_ids = torch.where(new_ids < len(batch.words), new_ids, ids)
        else:
            batch.add_words([added])
        changed = new_ids != ids
        changes = {}
        if reports:
            sample, position = changed.nonzero(as_tuple=True)
            entries = [[p, old, new] for p, old, new in zip(position.tolist(), batch.words_of(ids[sample, position]),
                                                            batch.words_of(new_ids[sample, position]))]
            changes["replaced"] = _by_sample(sample, len(batch), entries)
        return _written(batch, new_ids, lengths, torch.zeros_like(lengths), changes, changed.sum(1))
