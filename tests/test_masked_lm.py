"""The masked-LM refill's mechanics on tiny random models (one WordPiece, one byte-level BPE): only masked words
change, each refill is one of the model's top-k whole words there, and a uniform picks it the same way alone or
in any batch."""

from __future__ import annotations

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

transformers = pytest.importorskip("transformers")
from tokenizers import (  # noqa: E402
    AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers)

from augserve.text.masked_lm import load  # noqa: E402

WORDS = """
a the of and to in is was he for it with as his on be at by had are but from or have an they which one you were
all her she there would their we him been has when who will no more if out so up said what its about than into
them can only other time new some could these two may first then do any like my now over such our man me even
most made after also did many before must through back years where much your way well down should because each
just those people how too little state good very make world still own see men work long get here between both
life being under never day same another know while last might us great old year off come since against go came
right used take three states himself few house use during without again place around however home small found
thought went say part once general high upon school every does got united left number course war until always
away something fact though water less public put think almost hand enough far took head yet government system
better set told nothing night end why called didn find look asked later knew point next program city business
give group toward young days let room president side social given present several order national possible rather
second face per among form important often things looked early white case john become large big need four within
felt along children saw best church ever least power development light thing seemed family interest want members
mind country area others done turned although open god service certain kind problem began different door thus
help sense means whole matter perhaps itself york times law human line above name example action company hands
local show whether five history gave today either act feet across taken past quite anything seen having death
experience body word half really field am car words already themselves information tell together college shall
money period held keep sure real probably free seems political cannot behind miss question air office making
brought whose special heard major problems ago became federal moment study available known result street economic
boy reason change position south board individual job society areas west close turn love community true court
force full seem policy cat dog mat sat ran table chair tree river green blue red quick brown fox jumps lazy
""".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PIECES = ["##s", "##ing", "##ed", "##ly", "##er", ".", ",", "1990", "42", "[unused0]"]  # never a refill
TOP_K = 5


def _wordpiece():
    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS + PIECES)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.decoder = decoders.WordPiece()
    wrapped = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                                   model_max_length=128)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=37, max_position_embeddings=128)
    return wrapped, transformers.BertForMaskedLM(config)


def _byte_level_bpe():
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [" ".join(WORDS[start:] + WORDS[:start]) for start in range(0, len(WORDS), 7)]
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=1200, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    wrapped = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        mask_token=AddedToken("<mask>", lstrip=True), model_max_length=128)
    config = transformers.RobertaConfig(vocab_size=len(wrapped), hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=130,
                                        pad_token_id=1, bos_token_id=0, eos_token_id=2)
    return wrapped, transformers.RobertaForMaskedLM(config)


MARKERS = {_wordpiece: "", _byte_level_bpe: "Ġ"}  # how each marks the token that starts a word


def _refillable(tokenizer, marker: str, original: str = "") -> torch.Tensor:
    """(V,) bool: tokens that start a word, are letters only, are not special and are not ``original``."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([index not in special and token.startswith(marker) and not token.startswith("##")
                         and _word(token, marker).isascii() and _word(token, marker).isalpha()
                         and _word(token, marker) != original
                         for index, token in enumerate(tokenizer.convert_ids_to_tokens(range(len(tokenizer))))])


def _word(token: str, marker: str) -> str:
    return token.removeprefix(marker).lower()


@pytest.fixture(scope="module", params=[_wordpiece, _byte_level_bpe], ids=["wordpiece", "bpe"])
def checkpoint(request, tmp_path_factory):
    """(folder, marker): a random model whose likeliest tokens are the ones never to refill a word with."""
    folder = tmp_path_factory.mktemp(request.param.__name__)
    torch.manual_seed(0)
    tokenizer, model = request.param()
    marker = MARKERS[request.param]
    with torch.no_grad():
        model.get_output_embeddings().bias[~_refillable(tokenizer, marker)] += 4.0
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder, marker


@pytest.fixture
def lm(checkpoint):
    return load(checkpoint[0])


@pytest.fixture
def marker(checkpoint):
    return checkpoint[1]


def _batch(seed: int, size: int = 8, longest: int = 20):
    generator = torch.Generator().manual_seed(seed)
    words = WORDS[:150]
    ids = torch.randint(len(words), (size, longest), generator=generator)
    lengths = torch.randint(3, longest + 1, (size,), generator=generator)
    mask = torch.rand(size, longest, generator=generator) < 0.3  # also past the lengths: ignored there
    return words, ids, lengths, mask, torch.rand(size, longest, generator=generator)


def _inside(ids, lengths, mask):
    return mask & (torch.arange(ids.shape[1]) < lengths[:, None])


def _candidates(lm, marker, words, row, masked, keep_original=False) -> list[list[str]]:
    """The top-k whole words at each masked word of one sentence (ids ``row``), best first, from the model alone;
    without the word itself unless ``keep_original``."""
    text = " ".join(lm.tokenizer.mask_token if hidden else words[w] for w, hidden in zip(row, masked))
    encoded = lm.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        logits = lm.model(**encoded).logits[0]
    at = (encoded["input_ids"][0] == lm.tokenizer.mask_token_id).nonzero()[:, 0]
    originals = [words[w] for w, hidden in zip(row, masked) if hidden]
    found = []
    for position, original in zip(at.tolist(), originals):
        refillable = _refillable(lm.tokenizer, marker, "" if keep_original else original)
        top = logits[position].masked_fill(~refillable, float("-inf")).topk(TOP_K).indices.tolist()
        found.append([_word(token, marker) for token in lm.tokenizer.convert_ids_to_tokens(top)])
    return found


def _refills(words, added, new_ids, inside) -> list[list[str]]:
    vocabulary = words + added
    return [[vocabulary[w] for w in row[where].tolist()] for row, where in zip(new_ids, inside)]


def _texts(words, added, ids, lengths) -> list[list[str]]:
    vocabulary = words + added
    return [[vocabulary[w] for w in row[:size]] for row, size in zip(ids.tolist(), lengths.tolist())]


def test_only_masked_words_change_and_each_refill_is_a_top_k_whole_word(lm, marker):
    words, ids, lengths, mask, uniforms = _batch(1)
    added, new_ids = lm.fill(words, ids, lengths, mask, uniforms, TOP_K)
    inside = _inside(ids, lengths, mask)
    assert new_ids.dtype == torch.int64 and new_ids.shape == ids.shape
    assert torch.equal(new_ids[~inside], ids[~inside])
    assert len(set(added)) == len(added) and not set(added) & set(words)
    assert all(word.isascii() and word.isalpha() and word.islower() for word in added)
    for b, refills in enumerate(_refills(words, added, new_ids, inside)):
        size = int(lengths[b])
        candidates = _candidates(lm, marker, words, ids[b, :size].tolist(), inside[b, :size].tolist())
        assert len(refills) == len(candidates)
        assert all(word in top for word, top in zip(refills, candidates)), (refills, candidates)


def test_the_same_uniforms_refill_the_same_words_alone_or_in_a_batch(lm):
    words, ids, lengths, mask, uniforms = _batch(2)
    batched = _texts(words, *lm.fill(words, ids, lengths, mask, uniforms, TOP_K), lengths)
    assert _texts(words, *lm.fill(words, ids, lengths, mask, uniforms, TOP_K), lengths) == batched
    for b in range(len(ids)):
        size = int(lengths[b])  # alone, without the batch's padding
        added, alone = lm.fill(words, ids[b:b + 1, :size], lengths[b:b + 1], mask[b:b + 1, :size],
                               uniforms[b:b + 1, :size], TOP_K)
        assert _texts(words, added, alone, lengths[b:b + 1]) == [batched[b]]


def test_a_uniform_of_zero_picks_the_likeliest_word_other_than_the_one_masked(lm, marker):
    words, ids, lengths, mask, _ = _batch(3)
    inside = _inside(ids, lengths, mask)
    every = _refillable(lm.tokenizer, marker).nonzero()[:, 0].tolist()
    words = words + sorted({_word(token, marker) for token in lm.tokenizer.convert_ids_to_tokens(every)} - set(words))
    for b in range(len(ids)):  # each masked word becomes the model's likeliest word there
        size = int(lengths[b])
        likeliest = [top[0] for top in _candidates(lm, marker, words, ids[b, :size].tolist(),
                                                   inside[b, :size].tolist(), keep_original=True)]
        ids[b, inside[b]] = torch.tensor([words.index(word) for word in likeliest], dtype=torch.int64)
    added, new_ids = lm.fill(words, ids, lengths, mask, torch.zeros(ids.shape), TOP_K)
    for b, refills in enumerate(_refills(words, added, new_ids, inside)):
        size = int(lengths[b])
        candidates = _candidates(lm, marker, words, ids[b, :size].tolist(), inside[b, :size].tolist())
        assert refills == [top[0] for top in candidates]
        assert all(new != words[old] for new, old in zip(refills, ids[b, inside[b]].tolist()))


def test_nothing_masked_changes_nothing(lm):
    words, ids, lengths, _, uniforms = _batch(4)
    added, new_ids = lm.fill(words, ids, lengths, torch.zeros_like(ids, dtype=torch.bool), uniforms, TOP_K)
    assert added == [] and torch.equal(new_ids, ids)


def test_masked_words_past_what_the_model_reads_keep_their_own(lm):
    words = WORDS[:150]
    ids = torch.arange(len(words))[None]  # 150 words: more tokens than the model's 128
    added, new_ids = lm.fill(words, ids, torch.tensor([len(words)]), torch.ones_like(ids, dtype=torch.bool),
                             torch.full(ids.shape, 0.5), TOP_K)
    changed = (new_ids != ids)[0]
    kept = int(changed.sum())
    assert 0 < kept < len(words) and changed[:kept].all(), "the refilled words are the ones the model read"


def test_a_checkpoint_is_loaded_once_per_path_and_device_and_filled_from_many_threads(lm, tmp_path):
    assert load(lm.path) is lm and load(lm.path, "cpu") is lm
    folder = shutil.copytree(lm.path, tmp_path / "copy")
    batches = [_batch(seed) for seed in range(8)]
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: load(folder), range(4)))
        together = list(pool.map(lambda batch: lm.fill(*batch, TOP_K), batches))
    assert all(each is loaded[0] for each in loaded)
    for batch, (added, new_ids) in zip(batches, together):
        alone = lm.fill(*batch, TOP_K)
        assert added == alone[0] and torch.equal(new_ids, alone[1])


def test_what_is_not_a_masked_lm_is_refused_with_what_to_give(tmp_path):
    with pytest.raises(ValueError, match="no masked-LM checkpoint at .*save_pretrained"):
        load(tmp_path / "absent")
    config = dict(vocab_size=len(SPECIAL + WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=37)
    causal = tmp_path / "causal"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=config["vocab_size"], n_embd=32, n_layer=1,
                                                         n_head=2)).save_pretrained(causal)
    with pytest.raises(ValueError, match="not a masked-LM checkpoint.*fill-mask model"):
        load(causal)
    headless = tmp_path / "headless"
    transformers.BertModel(transformers.BertConfig(**config)).save_pretrained(headless)
    with pytest.raises(ValueError, match="lacks the weights of cls.*ForMaskedLM"):
        load(headless)
    untokenized = tmp_path / "untokenized"
    transformers.BertForMaskedLM(transformers.BertConfig(**config)).save_pretrained(untokenized)
    with pytest.raises(ValueError, match="no tokenizer beside the model.*save_pretrained"):
        load(untokenized)


def test_without_transformers_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'augserve\[text-lm\]'"):
        load(tmp_path)


def test_the_step_refills_about_p_of_the_words_reports_them_and_replays_in_any_batch(checkpoint):
    from augserve import Pipeline
    from augserve.text import masked_lm
    masked_lm.register("tiny-lm", checkpoint[0])
    pipe = Pipeline.from_spec([{"op": "contextual_substitution", "model": "tiny-lm", "p": 0.3, "top_k": TOP_K}])
    sentences = [" ".join(WORDS[start:start + 12]) for start in range(0, 240, 20)]
    keys = torch.arange(len(sentences)) * 7
    out = pipe(sentences, seed=4, keys=keys)
    changed = 0
    for sentence, new, replaced in zip(sentences, out.x, out.params[0]["replaced"]):
        words, refilled = sentence.split(), new.split()
        assert len(refilled) == len(words)
        assert [p for p, _, _ in replaced] == [i for i, (a, b) in enumerate(zip(words, refilled)) if a != b]
        assert all(words[p] == old and refilled[p] == word != old for p, old, word in replaced)
        changed += len(replaced)
    assert 0.15 < changed / sum(len(s.split()) for s in sentences) < 0.45
    rows = [5, 0, 9]
    assert pipe([sentences[i] for i in rows], seed=4, keys=keys[rows]).x == [out.x[i] for i in rows]


def test_a_sentence_holding_the_tokenizers_own_special_tokens_is_read_as_words(checkpoint):
    from augserve import Pipeline
    from augserve.text import masked_lm
    masked_lm.register("tiny-lm-special", checkpoint[0])
    pipe = Pipeline.from_spec({"modality": "text", "tokenizer": "whitespace", "steps": [
        {"op": "contextual_substitution", "model": "tiny-lm-special", "p": 0.5, "top_k": TOP_K}]})
    sentences = ["the <mask> cat [mask] sat on </s> the mat [cls] today", "dog ran to the river"]
    out = pipe(sentences, seed=1)
    for sentence, new in zip(sentences, out.x):
        assert len(new.split()) == len(sentence.split())
