"""Served text datasets and the paraphrases back-translation reads: apertium round trips (N sentences in, the
same N out, each in its place), label<TAB>sentence files and class folders read with their bad lines named,
``augserve datasets translate`` writing a paraphrase file that lookups then serve, and misses refused clearly."""

import pytest
import torch

from augserve.cli import build_parser, main
from augserve.server.datasets import load_datasets
from augserve.server.text_datasets import read_text_dataset
from augserve.text import paraphrases, translation


def _apertium_pair() -> str:
    try:
        translation.check("spa")
    except translation.TranslatorMissing as error:
        return str(error)
    return ""


needs_apertium = pytest.mark.skipif(bool(_apertium_pair()), reason=_apertium_pair())

REVIEWS = [("good", "The food was great and the staff were friendly."),
           ("bad", "I waited an hour for a cold pizza."),
           ("good", "We will come back next week with our friends!"),
           ("bad", 'The "special" soup cost $12 and tasted of nothing.')]


def write_reviews(path, rows=REVIEWS):
    path.write_text("".join(f"{label}\t{sentence}\n" for label, sentence in rows), encoding="utf-8")
    return path


@needs_apertium
def test_a_round_trip_gives_one_paraphrase_per_sentence_in_its_place():
    sentences = ["The cat sat on the mat.", "", "New York is big", "city", '"Hello," she said, "it\'s 3 o\'clock!"',
                 "xyzzy flurbed the grommish quoxes", ".", "[brackets] ^caret$ \\back @at #hash *star ~tilde",
                 "tab\there\nand a newline", "I can't believe it's not butter"]
    tagged = [f"{sentence} 7301{i:02d}" for i, sentence in enumerate(sentences)]  # digits cross unchanged
    out = translation.round_trip(tagged)
    assert len(out) == len(tagged)
    assert all(f"7301{i:02d}" in paraphrase and paraphrase.count("7301") == 1 for i, paraphrase in enumerate(out))
    assert out[2] == "New York is big 730102"  # a plain newline would have moved "city" into this sentence
    changed = [a for a, b in zip(tagged, out) if paraphrases.key(a) != paraphrases.key(b)]
    assert len(changed) >= 3, out
    assert all("\t" not in p and "\n" not in p for p in out)


def test_a_missing_pair_says_what_to_install(monkeypatch):
    monkeypatch.setattr(translation, "_directions", lambda: frozenset({"eng-spa", "spa-eng"}))
    with pytest.raises(translation.TranslatorMissing, match="apt-get install apertium-eng-cat"):
        translation.round_trip(["a sentence"], pivot="cat")


def test_a_label_tab_sentence_file_and_a_class_folder_are_read(tmp_path):
    dataset = read_text_dataset("reviews", {"type": "text", "path": str(write_reviews(tmp_path / "reviews.tsv"))})
    assert dataset.classes == ["bad", "good"] and dataset.num_classes == 2 and len(dataset) == 4
    assert dataset.labels.tolist() == [1, 0, 1, 0] and dataset.labels.dtype == torch.int64
    samples = dataset.read(torch.tensor([3, 0]))
    assert samples.x == [REVIEWS[3][1], REVIEWS[0][1]] and samples.labels.tolist() == [0, 1]
    assert dataset.where(3).endswith("reviews.tsv line 4") and dataset.modality == "text"
    assert dataset.paraphrase_file == tmp_path / "reviews.tsv.paraphrases.tsv"

    for label, lines in (("sports", "Goal in the last minute.\n\nThe keeper saved it.\n"), ("tech", "New phone.\r\n")):
        (tmp_path / "news" / label).mkdir(parents=True)
        (tmp_path / "news" / label / "a.txt").write_text(lines)
    (tmp_path / "news" / "arts").mkdir()  # a class without sentences is still a class, as in an image folder
    news = load_datasets({"news": {"type": "text", "path": str(tmp_path / "news")}})["news"]()
    assert news.sentences == ["Goal in the last minute.", "The keeper saved it.", "New phone."]
    assert news.labels.tolist() == [1, 1, 2] and news.classes == ["arts", "sports", "tech"]
    assert news.where(1).endswith("a.txt line 3") and news.paraphrase_file == tmp_path / "news.paraphrases.tsv"

    numbered = read_text_dataset("n", {"type": "text", "path": str(write_reviews(tmp_path / "n.tsv", [("2", "x")]))})
    assert numbered.labels.tolist() == [2] and numbered.classes == ["0", "1", "2"]  # integer labels kept


@pytest.mark.parametrize("content, entry, words", [
    (b"good\tfine\nno tab here\n", {}, "line 2: no tab"),
    (b"good\tfine\nbad\tcaf\xe9\n", {}, "line 2: not UTF-8 (byte 0xe9 at column 8)"),
    (b"good\t  \n", {}, "line 1: no sentence after the tab"),
    (b"\tfine\n", {}, "line 1: expected a label"),
    (b"good\t" + b"word " * 30 + b"\n", {"max_chars": 100}, "line 1: 149 characters, more than max_chars 100"),
    (b"good\t" + b"w" * 5000 + b"\n", {"max_chars": 100}, "line 1: longer than max_chars 100 allows"),
    (b"a\tone\nb\ttwo\nc\tthree\n", {"max_sentences": 2}, "more than max_sentences 2 sentences (at"),
    (b"a\tone\n", {"max_chars": 0}, "datasets.bad.max_chars: expected an integer in [1, 65536], got 0"),
    (b"a\tone\n", {"lines": 3}, "unknown field 'lines' for type text"),
    (b"", {}, "no sentences in"),
])
def test_bad_lines_and_fields_are_refused_naming_them(tmp_path, content, entry, words):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad") as raised:
        load_datasets({"bad": {"type": "text", "path": str(path), **entry}})
    assert words in str(raised.value)
    assert not words.startswith("line") or f"{path} {words}" in str(raised.value)


@needs_apertium
def test_the_cli_writes_paraphrases_that_lookups_serve_and_resumes(tmp_path, capsys):
    data = write_reviews(tmp_path / "reviews.tsv")
    config = tmp_path / "serve.yaml"
    config.write_text(f"datasets:\n  reviews: {{type: text, path: {data}}}\n  digits2: {{type: folder, path: "
                      f"{tmp_path}}}\n")
    assert main(["datasets", "translate", str(config), "reviews"]) == 0
    assert "reviews: 4 sentences translated via spa, 0 stored before" in capsys.readouterr().out
    written = paraphrases.load(tmp_path / "reviews.tsv.paraphrases.tsv")
    sentences = [sentence for _, sentence in REVIEWS]
    assert list(written) == [paraphrases.key(sentence) for sentence in sentences]
    assert paraphrases.lookup(sentences, translate=False) == list(written.values())

    kept = (tmp_path / "reviews.tsv.paraphrases.tsv").read_text().splitlines()
    (tmp_path / "reviews.tsv.paraphrases.tsv").write_text("\n".join(kept[1:]) + "\n")  # as if stopped early
    assert main(["datasets", "translate", str(config), "reviews"]) == 0
    assert "reviews: 1 sentences translated via spa, 3 stored before" in capsys.readouterr().out
    assert paraphrases.load(tmp_path / "reviews.tsv.paraphrases.tsv") == {
        k: written[k] for k in [*list(written)[1:], list(written)[0]]}

    assert main(["datasets", "translate", str(config), "digits2"]) == 2
    assert "'digits2' is not a text dataset" in capsys.readouterr().err


def test_a_miss_without_translation_names_the_sample_and_what_to_do(tmp_path):
    paraphrases.add({"a stored sentence": "A kept sentence"}, "test")
    assert paraphrases.lookup(["A stored sentence!", "?!"], translate=False) == ["A kept sentence", "?!"]
    with pytest.raises(ValueError, match=r"sample 1: no paraphrase of 'Quokkas never .*1 of the 2 sentences "
                                         r"have none.*augserve datasets translate CONFIG NAME.*--translate"):
        paraphrases.lookup(["A stored sentence", "Quokkas never nap on the zebra."], translate=False)


@needs_apertium
def test_a_miss_is_translated_once_and_then_kept():
    sentence = "The lighthouse keeper painted the stairs blue."
    first = paraphrases.lookup([sentence, sentence.upper()], translate=True)
    assert first[0] == first[1] and paraphrases.lookup([sentence], translate=False) == first[:1]


def test_a_paraphrase_file_with_a_bad_line_or_too_large_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "p.tsv"
    paraphrases.save(path, {"the cat": "The cat", "a dog": "A dog"})
    assert paraphrases.load(path) == {"the cat": "The cat", "a dog": "A dog"}
    path.write_text("the cat\tThe cat\nThe Dog\tA dog\n")
    with pytest.raises(ValueError, match="p.tsv line 2: expected a sentence's EDA words"):
        paraphrases.load(path)
    monkeypatch.setattr(paraphrases, "MAX_FILE_BYTES", 8)
    with pytest.raises(ValueError, match=r"p.tsv is 30 bytes, more than the 8 .*\(MAX_FILE_BYTES\)"):
        paraphrases.load(path)


def test_serve_takes_translate_from_its_flag_and_env(monkeypatch):
    assert build_parser().parse_args(["serve"]).translate is False
    assert build_parser().parse_args(["serve", "--translate"]).translate is True
    monkeypatch.setenv("AUGSERVE_TRANSLATE", "1")
    assert build_parser().parse_args(["serve"]).translate is True


def test_the_store_is_bounded_in_characters_before_any_translating(monkeypatch):
    from augserve.text import paraphrases
    monkeypatch.setattr(paraphrases, "MAX_CHARACTERS", paraphrases._characters + 100)
    with pytest.raises(ValueError, match=r"would pass the \d+ a process keeps \(MAX_CHARACTERS"):
        paraphrases.add({"a long sentence " * 10: "its paraphrase"}, "this test")
    with pytest.raises(ValueError, match=r"translating back: .*MAX_CHARACTERS"):
        paraphrases.lookup(["never stored before, and long enough to pass the bound " * 2], translate=True)


def test_a_sentence_that_grows_too_long_to_translate_is_named_by_its_place_in_the_batch(monkeypatch):
    from augserve import Pipeline
    from augserve.text import paraphrases, translation
    monkeypatch.setattr(paraphrases, "_translating", True)  # as in process (a server started here turns it off)
    monkeypatch.setattr(translation, "MAX_CHARS", 40)
    monkeypatch.setattr(translation, "check", lambda pivot="spa": None)  # refused before apertium runs
    sentences = ["short one", "another short one", "a sentence far longer than forty characters, never stored"]
    with pytest.raises(ValueError, match=r"step 1 \(back_translation\): x\[2\]: \d+ characters, more than 40"):
        Pipeline.from_spec([{"op": "back_translation", "p": 1.0}])(sentences, seed=0)
