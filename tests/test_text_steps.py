"""EDA's word operations held to EDA's rules (checked with nltk's WordNet reader) and to the step contract:
replay by (seed, key) in any batch, per-sample reports, refusals naming the sentence."""

from __future__ import annotations

import collections
import pathlib

import pytest
import torch
from scipy import stats

from augserve import Pipeline
from augserve.spec import SpecError
from augserve.text import wordnet
from augserve.text.tokens import STOP_WORDS, eda_words
from conftest import needs_wordnet
from test_golden_replay import TEXT_OP_SPECS as EVERY_TEXT_OP

TEXT_OP_SPECS = {op: spec for op, spec in EVERY_TEXT_OP.items() if op != "back_translation"}  # it has its own test

pytestmark = needs_wordnet

FORTUNES = pathlib.Path("/usr/share/games/fortunes")
KEYS = torch.tensor([11, 5, 1 << 35, 7, 2, 90])


def _sentences() -> list[str]:
    """Real sentences: fortunes when installed, else a few written here."""
    if (FORTUNES / "science").is_file():
        texts = (FORTUNES / "science").read_text(errors="replace").split("\n%\n")
        return [t.replace("\n", " ") for t in texts if 6 <= len(eda_words(t)) <= 40][:60]
    return ["The quick brown fox jumps over the lazy dog near the river bank",
            "Scientists discovered that the old bridge was built on sand", "Hello there",
            "A computer program does what you tell it to do, not what you want it to do"] * 15


def _eda_synonyms(word: str) -> set[str]:
    """EDA's get_synonyms, read straight from nltk's reader."""
    found = set()
    for synset in wordnet.reader().synsets(word):
        for lemma in synset.lemmas():
            name = lemma.name().replace("_", " ").replace("-", " ").lower()
            found.add("".join(c for c in name if c in " qwertyuiopasdfghjklzxcvbnm"))
    found.discard(word)
    return {" ".join(s.split()) for s in found if s.strip()}


def _n(alpha: float, words: list[str]) -> int:
    return max(1, int(alpha * len(words)))


def test_synonym_replacement_replaces_n_distinct_non_stop_words_everywhere_by_wordnet_synonyms():
    sentences = _sentences()
    out = Pipeline.from_spec([{"op": "synonym_replacement", "alpha": 0.2}])(sentences, seed=1)
    replaced = out.params[0]["replaced"]
    for sentence, new, changes in zip(sentences, out.x, replaced):
        words = eda_words(sentence)
        candidates = {w for w in words if w not in STOP_WORDS and _eda_synonyms(w)}
        assert len(changes) == min(_n(0.2, words), len(candidates))
        swap = {old: synonym for _, old, synonym in changes}
        for position, old, synonym in changes:
            assert words[position] == old and words.index(old) == position  # reported at its first occurrence
            assert old not in STOP_WORDS and synonym in _eda_synonyms(old), (old, synonym)
        assert new == " ".join(swap.get(w, w) for w in words)  # every occurrence, nothing else


def test_random_insertion_inserts_n_synonyms_of_the_sentences_words():
    sentences = _sentences()
    out = Pipeline.from_spec([{"op": "random_insertion", "alpha": 0.2}])(sentences, seed=2)
    for sentence, new, inserted in zip(sentences, out.x, out.params[0]["inserted"]):
        words = eda_words(sentence)
        assert len(inserted) == _n(0.2, words)
        synonyms = set().union(*map(_eda_synonyms, words))
        assert all(0 <= at < len(words) and phrase in synonyms for at, phrase in inserted)
        rebuilt = list(words)
        for at, phrase in sorted(inserted, key=lambda entry: entry[0], reverse=True):  # same place: draw order
            rebuilt[at:at] = phrase.split()
        # equal up to the order of several insertions before one word
        assert collections.Counter(new.split()) == collections.Counter(rebuilt)


def test_random_swap_keeps_the_words_and_makes_n_swaps():
    sentences = _sentences()
    out = Pipeline.from_spec([{"op": "random_swap", "alpha": 0.2}])(sentences, seed=3)
    for sentence, new, swaps in zip(sentences, out.x, out.params[0]["swapped"]):
        words = eda_words(sentence)
        assert sorted(new.split()) == sorted(words)
        assert len(swaps) == _n(0.2, words)  # three tries at a second position miss with p < 1e-3 here
        for a, b in swaps:
            words[a], words[b] = words[b], words[a]
        assert new.split() == words


def test_random_deletion_keeps_a_subsequence_drops_p_of_the_words_and_never_all():
    sentences = _sentences() * 8
    p = 0.3
    out = Pipeline.from_spec([{"op": "random_deletion", "p": p}])(sentences, seed=4, keys=torch.arange(len(sentences)))
    dropped = total = 0
    for sentence, new, deleted in zip(sentences, out.x, out.params[0]["deleted"]):
        words = eda_words(sentence)
        kept = iter(words)
        assert new and all(word in kept for word in new.split())  # a subsequence
        assert [w for i, w in enumerate(words) if i not in {at for at, _ in deleted}] == new.split()
        dropped, total = dropped + len(deleted), total + len(words)
    assert stats.binomtest(dropped, total, p).pvalue > 1e-3
    everything = Pipeline.from_spec([{"op": "random_deletion", "p": 1.0}])(sentences[:6], seed=5)
    assert all(len(s.split()) == 1 and s in eda_words(t) for s, t in zip(everything.x, sentences))


def test_eda_picks_each_operation_for_a_quarter_of_the_samples():
    sentences = _sentences() * 10
    out = Pipeline.from_spec([{"op": "eda"}])(sentences, seed=6, keys=torch.arange(len(sentences)))
    counts = collections.Counter(out.params[0]["operation"])
    assert set(counts) == {"synonym_replacement", "random_insertion", "random_swap", "random_deletion"}
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3
    for operation, swapped, sentence, new in zip(out.params[0]["operation"], out.params[0]["swapped"], sentences, out.x):
        if operation == "random_swap":
            assert sorted(new.split()) == sorted(eda_words(sentence)) and swapped


@pytest.mark.parametrize("op", sorted(TEXT_OP_SPECS))
def test_a_sentence_replays_alone_and_in_any_batch(op):
    pipe = Pipeline.from_spec([{"op": op, **TEXT_OP_SPECS[op]}, {"op": "label_smoothing"}])
    sentences = _sentences()[:6]
    labels = torch.arange(6) % 3
    full = pipe(sentences, labels, seed=9, keys=KEYS, num_classes=3)
    rows = [4, 1, 5]
    part = pipe([sentences[i] for i in rows], labels[rows], seed=9, keys=KEYS[rows], num_classes=3)
    assert part.x == [full.x[i] for i in rows]
    assert torch.equal(part.labels, full.labels[rows]) and torch.allclose(full.labels.sum(1), torch.ones(6))
    for name, value in full.params[0].items():  # every report is per sample, and cut with the rows
        if isinstance(value, (list, torch.Tensor)):
            assert len(value) == 6, name
            picked = value[rows] if isinstance(value, torch.Tensor) else [value[i] for i in rows]
            assert (torch.equal(picked, part.params[0][name]) if isinstance(value, torch.Tensor)
                    else picked == part.params[0][name]), name
    assert full.lengths.tolist() == [len(s.split()) for s in full.x]
    assert pipe.at_strength(0)(sentences, seed=1).x == [" ".join(eda_words(s)) for s in sentences]


@pytest.mark.parametrize("op", sorted(TEXT_OP_SPECS))
def test_without_reports_a_step_edits_the_same_and_keeps_its_counts_alone(op):
    pipe = Pipeline.from_spec([{"op": op, **TEXT_OP_SPECS[op]}])
    sentences = _sentences()[:6]
    full, bare = (pipe(sentences, seed=3, keys=KEYS, reports=reports) for reports in (True, False))
    assert bare.x == full.x and torch.equal(bare.lengths, full.lengths)
    assert any(isinstance(value, list) for value in full.params[0].values())
    kept = {name: value for name, value in full.params[0].items() if not isinstance(value, list)}
    assert bare.params[0].keys() == kept.keys() and {"changed", "cut"} <= kept.keys()
    assert all(torch.equal(bare.params[0][name], value) if isinstance(value, torch.Tensor)
               else bare.params[0][name] == value for name, value in kept.items())


def test_growth_past_max_words_is_cut_and_reported():
    pipe = Pipeline.from_spec({"modality": "text", "max_words": 8,
                               "steps": [{"op": "random_insertion", "alpha": 0.5}]})
    out = pipe(["the old dog walked slowly to the house"], seed=0)
    assert out.x[0].count(" ") == 7 and out.params[0]["cut"].tolist() == [4]
    assert pipe.to_spec()["max_words"] == 8 and Pipeline.from_spec(pipe.to_spec())(
        ["the old dog walked slowly to the house"], seed=0).x == out.x


@pytest.mark.parametrize("sentences, refusal", [
    ([], r"x: expected a non-empty list of sentences"),
    (["fine", ""], r"x\[1\]: no words in ''"),
    (["fine", "!!! 42 ???"], r"x\[1\]: no words"),
    (["fine", b"bytes"], r"x\[1\]: expected a sentence \(str\), got bytes"),
    (["fine", "word " * 600], r"x\[1\]: 600 words; the limit is 512"),
    ("a string, not a list", r"x: expected a non-empty list of sentences \(str\), got str"),
])
def test_bad_sentences_are_refused_naming_the_sample(sentences, refusal):
    with pytest.raises(ValueError, match=refusal):
        Pipeline.from_spec([{"op": "eda"}])(sentences, seed=0)


def test_spec_mistakes_are_refused_by_name():
    with pytest.raises(SpecError, match="max_words"):
        Pipeline.from_spec({"modality": "text", "max_words": 0, "steps": [{"op": "eda"}]})
    with pytest.raises(SpecError, match="are for text pipelines"):
        Pipeline.from_spec({"tokenizer": "whitespace", "steps": [{"op": "hflip"}]})
    with pytest.raises(SpecError, match=r"steps for different modalities \(image, text\)"):
        Pipeline.from_spec([{"op": "eda"}, {"op": "hflip"}])
    whitespace = Pipeline.from_spec({"modality": "text", "tokenizer": "whitespace", "steps": [{"op": "random_swap"}]})
    assert sorted(whitespace(["C++ is fun, really"], seed=0).x[0].split()) == ["c++", "fun,", "is", "really"]


def test_back_translation_takes_the_stored_paraphrase_with_probability_p_and_misses_name_the_sample():
    from augserve.text import paraphrases
    sentences = [f"Sentence number {word} about cats and dogs" for word in ("one", "two", "three", "four")] * 25
    paraphrases.add({paraphrases.key(s): f"phrase {paraphrases.key(s)} again" for s in sentences[:4]}, "this test")
    was = paraphrases.translating()
    paraphrases.set_translating(False)
    try:
        pipe = Pipeline.from_spec([{"op": "back_translation", "p": 0.5}, {"op": "random_swap", "alpha": 0.0}])
        out = pipe(sentences, seed=3, keys=torch.arange(100))
        applied = out.params[0]["changed"].bool()
        assert stats.binomtest(int(applied.sum()), 100, 0.5).pvalue > 1e-3
        for sentence, new, used in zip(sentences, out.x, applied.tolist()):
            assert new == (f"phrase {paraphrases.key(sentence)} again" if used else paraphrases.key(sentence))
        assert pipe(sentences[7:9], seed=3, keys=torch.arange(7, 9)).x == out.x[7:9]
        with pytest.raises(ValueError, match=r"step 1 \(back_translation\): x\[1\]: no paraphrase of 'never seen'"):
            Pipeline.from_spec([{"op": "back_translation", "p": 1.0}])(["Sentence number one about cats and dogs",
                                                                      "never seen"], seed=0)
    finally:
        paraphrases.set_translating(was)


def test_word_ids_of_a_named_vocabulary_come_back_as_ids_of_it():
    from augserve.text import vocabularies
    words = sorted({w for s in _sentences()[:20] for w in eda_words(s)} | set("big large great house home dog".split()))
    vocabularies.register("test-words", words)
    pipe = Pipeline.from_spec({"modality": "text", "vocabulary": "test-words",
                               "steps": [{"op": "synonym_replacement", "alpha": 0.5}, {"op": "random_insertion"}]})
    sentence = "the big dog saw a large house".split()
    known = [w for w in sentence if w in words]
    ids = torch.tensor([[words.index(w) for w in known] + [0, 0]])
    out = pipe(ids, lengths=torch.tensor([len(known)]), seed=3)
    assert out.x.dtype == torch.int64 and int(out.x.max()) < len(words)  # only the vocabulary's words written
    assert int(out.lengths[0]) > len(known) and out.params[0]["changed"].tolist() == [3]
    assert all(word in words for _, _, phrase in out.params[0]["replaced"][0] for word in phrase.split())
    bare = pipe(ids, lengths=torch.tensor([len(known)]), seed=3, reports=False)
    assert torch.equal(bare.x, out.x) and "replaced" not in bare.params[0]
    with pytest.raises(ValueError, match=r"x\[0\]: word ids must lie in \[0, \d+\)"):
        pipe(torch.tensor([[len(words)]]), seed=0)
    with pytest.raises(ValueError, match="word ids need the vocabulary they index"):
        Pipeline.from_spec([{"op": "eda"}])(ids, seed=0)


@pytest.mark.parametrize("op", sorted(TEXT_OP_SPECS))
def test_on_a_stand_in_cuda_device_the_ids_stay_there_and_give_the_hosts_sentences(op):
    """Text runs as batched ops on the batch's device (host reads only for widths and reports)."""
    from augserve.tools.stand_in_device import OnDevice
    pipe = Pipeline.from_spec([{"op": op, **TEXT_OP_SPECS[op]}, {"op": "label_smoothing"}])
    sentences, labels = _sentences()[:6], torch.arange(6) % 3
    host = pipe(sentences, labels, seed=9, keys=KEYS, num_classes=3)
    with OnDevice(cuda=True) as device:
        batch = pipe.text.encode(sentences)
        batch = batch.with_ids(device.to_device(batch.ids), device.to_device(batch.lengths))
        out = pipe(batch, device.to_device(labels), seed=9, keys=device.to_device(KEYS), num_classes=3)
    assert not device.mixed, device.mixed
    assert out.x == host.x and torch.equal(out.labels.values, host.labels)


@pytest.mark.parametrize("words, refusal", [([], "a list of 1 to"), (["a", "b", "a"], "'a' appears more than once"),
                                            (["fine", "two words"], "every entry must be a word"),
                                            (["fine", ""], "every entry must be a word")])
def test_a_bad_vocabulary_is_refused_saying_why(words, refusal):
    from augserve.text import vocabularies
    with pytest.raises(ValueError, match=refusal):
        vocabularies.register("bad-words", words)


def test_without_wordnet_the_steps_that_read_it_are_refused_at_their_spec(monkeypatch):
    monkeypatch.setattr(wordnet, "missing", lambda: "WordNet 3.0 is not installed: apt-get install wordnet-base")
    with pytest.raises(SpecError, match=r"step 1 \(eda\): reads WordNet's synonyms: .*apt-get install wordnet-base"):
        Pipeline.from_spec([{"op": "eda"}])
    Pipeline.from_spec([{"op": "random_swap"}, {"op": "eda", "alpha_sr": 0, "alpha_ri": 0}])  # read none


def test_the_batch_tokenizer_gives_each_sentence_its_own_words():
    from augserve.text.tokens import TOKENIZERS, words_of_all
    sentences = _sentences() + ["Don't—stop\tme’now", "ÉCOLE straße ΣΑΣ", "  ", "x\ny"]
    for name, tokenize in TOKENIZERS.items():
        assert words_of_all(name, sentences) == [tokenize(s) for s in sentences]
        with_nul = sentences + ["a NUL \x00 inside"]  # read one by one: the separator is in a sentence
        assert words_of_all(name, with_nul) == [tokenize(s) for s in with_nul]


@pytest.mark.parametrize("steps", [["synonym_replacement", "synonym_replacement"],
                                   ["synonym_replacement", "random_insertion"], ["eda", "eda"]])
def test_chained_synonym_steps_replay_alone_and_in_any_batch(steps):
    """A synonym a step wrote has synonyms of its own for the next step, whatever else the batch holds."""
    pipe = Pipeline.from_spec([{"op": op, **({"alpha": 0.5} if op != "eda" else {})} for op in steps])
    sentences = _sentences()[:12]
    keys = torch.arange(12) * 3 + 1
    full = pipe(sentences, seed=5, keys=keys)
    alone = [pipe([sentence], seed=5, keys=keys[i:i + 1]).x[0] for i, sentence in enumerate(sentences)]
    assert alone == full.x


def test_every_sentence_a_pipeline_cannot_take_is_listed_so_a_stream_leaves_them_out_at_once():
    from augserve.text.batch import SentenceError
    with pytest.raises(SentenceError, match=r"x\[1\]: no words") as caught:
        Pipeline.from_spec([{"op": "random_swap"}])(["ok words", "", "fine", "!!!", "w " * 600, "x" * 70_000],
                                                    seed=0)
    assert [(index, why.split(";")[0].split(" (")[0]) for index, why in caught.value.problems] == [
        (1, "no words in ''"), (3, "no words in '!!!'"), (4, "600 words"), (5, "70000 characters")]
