"""Text rows of ``augserve bench``: EDA's four word operations and ``eda`` on 1,000 fortunes, against textaugment's
``EDA`` (a port of Wei & Zou's EDA script, one sentence at a time: the anchor) and nlpaug's word augmenters.

Every engine gets the same fortunes (Debian's ``fortunes`` files, 5 to 60 words; augserve.experiments.fortunes) and
cleans them with EDA's tokenizer inside the timed call, as EDA's script does before its operations; every one runs
at EDA's default alpha = p = 0.1 on one thread (augserve's calls with one torch thread; the others are plain
Python). Warm on every side: the harness runs each engine once untimed before its timed calls, so augserve's
per-word synonym cache is full and nltk's WordNet reader (which textaugment and nlpaug query for every lookup,
keeping no cache of their own) has read what it reads. augserve takes 256 sentences a call, keys per sentence,
and returns the sentences alone (``reports=False``: the other engines report nothing either, nor does a training
job's request without return_params);
its "word ids" rows take the same fortunes numbered once, outside the timed call, by a registered vocabulary (their
words and their synonyms' words), as a training job that numbers its corpus for its model does, and give ids back.

What differs: textaugment is given EDA's stop words as a set (its default is a list, slower to search). nlpaug
counts ceil(alpha * words) words, not EDA's max(1, int(alpha * words)); its delete drops exactly that many (EDA:
each word with probability p), its swap moves a word to a neighbour (EDA: two random positions), and its
synonym replacement picks among all non-stop words, keeping those WordNet lacks. nlpaug tags parts of speech with
nltk's perceptron tagger, a download that cannot be fetched offline: it is given a tagger that tags nothing, so
every word is looked up under all parts of speech as EDA does, and its tagging cost is left out of its rows.

textaugment's dependencies (gensim, googletrans and PyPI's ``asyncio``) are not in the bench extra: install it
with ``pip install textaugment==3.0.0 --no-deps``; its ``eda.py`` (nltk only) is loaded alone, since the package's
``__init__`` imports the rest. Without it the textaugment rows are left out.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import random
import sys
from typing import Callable, Iterator
from unittest import mock

import torch

from augserve.pipeline import Pipeline
from augserve.text import wordnet
from augserve.text.tokens import STOP_WORDS, eda_words
from augserve.tools.bench.harness import Engine, Wanted

COUNT, CALL, ALPHA = 1000, 256, 0.1
OPS = ("synonym_replacement", "random_insertion", "random_swap", "random_deletion", "eda")


def _case(op: str) -> str:
    return f"text {op}, {COUNT:,} fortunes"


def text_cases(wanted: Wanted) -> dict[str, list[Engine]]:
    """The text cases ``wanted`` accepts, built only then."""
    ops = [op for op in OPS if wanted(_case(op))]
    if not ops:
        return {}
    from augserve.experiments.fortunes import load_fortunes

    try:
        pool = load_fortunes().pool.texts
        wordnet.reader()  # puts augserve's WordNet on nltk.data.path: nltk.corpus.wordnet reads the same database
    except RuntimeError as error:  # the fortune files or WordNet missing: the message names the package
        raise ValueError(str(error)) from None
    sentences = [pool[i * len(pool) // COUNT] for i in range(COUNT)]
    textaugment, nlpaug = _textaugment_engines(sentences), _nlpaug_engines(sentences)
    ids = _numbered(sentences)
    cases = {_case(op): [*textaugment.get(op, []), *nlpaug.get(op, []), _augserve(op, sentences),
                         _augserve_ids(op, *ids)] for op in ops}
    return {case: engines for case, engines in cases.items() if len(engines) > 1}


def _cleaned(sentences: list[str]) -> list[str]:
    return [" ".join(eda_words(sentence)) for sentence in sentences]


def _count(words: str) -> int:
    return max(1, int(ALPHA * len(words.split())))


def _textaugment_engines(sentences: list[str]) -> dict[str, list[Engine]]:
    eda = _textaugment_eda()
    if eda is None:
        print("bench: textaugment is not installed (pip install textaugment==3.0.0 --no-deps): its rows are left "
              "out", file=sys.stderr)
        return {}
    ops = {"synonym_replacement": lambda s: eda.synonym_replacement(s, _count(s)),
           "random_insertion": lambda s: eda.random_insertion(s, _count(s)),
           "random_swap": lambda s: eda.random_swap(s, _count(s)),
           "random_deletion": lambda s: eda.random_deletion(s, ALPHA)}
    every = list(ops.values())
    ops["eda"] = lambda s: random.choice(every)(s)

    def per_sentence(op: Callable[[str], str], note: str) -> Engine:
        return Engine("textaugment EDA, per sentence", lambda: [op(s) for s in _cleaned(sentences)], note, COUNT)

    notes = {"random_deletion": "each word with p = 0.1", "eda": "one of the four per sentence (random.choice)"}
    return {op: [per_sentence(run, notes.get(op, "n = max(1, int(0.1 * words)) per sentence"))]
            for op, run in ops.items()}


def _textaugment_eda():
    """textaugment's EDA with EDA's stop words (None where textaugment is not installed); its constructor's
    downloads of nltk's stop words and WordNet are skipped: neither is read."""
    try:
        path = importlib.metadata.distribution("textaugment").locate_file("textaugment/eda.py")
    except importlib.metadata.PackageNotFoundError:
        return None
    spec = importlib.util.spec_from_file_location("textaugment_eda", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with mock.patch.object(module.nltk, "download", lambda *args, **kwargs: True):
        return module.EDA(stop_words=STOP_WORDS, random_state=0)


def _nlpaug_engines(sentences: list[str]) -> dict[str, list[Engine]]:
    if importlib.util.find_spec("nlpaug") is None:
        print("bench: nlpaug is not installed (pip install 'augserve[bench]'): its rows are left out", file=sys.stderr)
        return {}
    import nlpaug.augmenter.word as naw

    counts = {"aug_p": ALPHA, "aug_min": 1, "aug_max": None}
    synonyms = naw.SynonymAug(aug_src="wordnet", stopwords=STOP_WORDS, **counts)
    synonyms.model.pos_tag = lambda tokens: [(token, "") for token in tokens]  # no tagger offline: all parts

    def engine(name: str, augmenter, note: str) -> Engine:
        return Engine(name, lambda: augmenter.augment(_cleaned(sentences)), note, COUNT)

    return {"synonym_replacement": [engine("nlpaug SynonymAug(wordnet)", synonyms,
                                           "ceil(0.1 * words) non-stop words; no POS tagger (offline)")],
            "random_swap": [engine("nlpaug RandomWordAug(swap)", naw.RandomWordAug("swap", **counts),
                                   "ceil(0.1 * words) words, each with a neighbour")],
            "random_deletion": [engine("nlpaug RandomWordAug(delete)", naw.RandomWordAug("delete", **counts),
                                       "exactly ceil(0.1 * words) words")]}


def _on_one_thread(run: Callable[[int], object], seeds: Iterator[int]) -> Callable[[], object]:
    """``run`` with a fresh seed per pass, on one torch thread as the other engines run (the count restored)."""
    def timed() -> object:
        seed, threads = next(seeds), torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run(seed)
        finally:
            torch.set_num_threads(threads)

    return timed


def _numbered(sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The fortunes as word ids (COUNT, L) and lengths of a vocabulary registered as ``fortunes``: their words and
    every word of their WordNet synonyms, so that no synonym is left out for lying outside it."""
    from augserve.text import vocabularies

    rows = [eda_words(sentence) for sentence in sentences]
    words = sorted({word for row in rows for word in row})
    words += sorted({part for word in words for phrase in wordnet.synonyms(word) for part in phrase} - set(words))
    number = {word: i for i, word in enumerate(vocabularies.register("fortunes", words).words)}
    lengths = torch.tensor([len(row) for row in rows])
    ids = torch.zeros(len(rows), int(lengths.max()), dtype=torch.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor([number[word] for word in row])
    return ids, lengths


def _augserve_ids(op: str, ids: torch.Tensor, lengths: torch.Tensor) -> Engine:
    pipeline = Pipeline.from_spec({"modality": "text", "vocabulary": "fortunes", "steps": [{"op": op}]})
    keys, seeds = torch.arange(COUNT), itertools.count()
    calls = [(slice(start, start + CALL), int(lengths[start:start + CALL].max())) for start in range(0, COUNT, CALL)]

    def run(seed: int) -> list[torch.Tensor]:
        return [pipeline(ids[rows, :width], seed=seed, keys=keys[rows], lengths=lengths[rows], reports=False).x
                for rows, width in calls]

    return Engine("augserve, word ids", _on_one_thread(run, seeds), f"{CALL} a call; the job numbered its sentences once", COUNT)


def _augserve(op: str, sentences: list[str]) -> Engine:
    pipeline = Pipeline.from_spec([{"op": op}])
    keys, seeds = torch.arange(COUNT), itertools.count()

    def run(seed: int) -> list[str]:
        return [s for start in range(0, COUNT, CALL)
                for s in pipeline(sentences[start:start + CALL], seed=seed, keys=keys[start:start + CALL],
                                  reports=False).x]

    return Engine("augserve", _on_one_thread(run, seeds), f"{CALL} sentences a call, one torch thread", COUNT)
