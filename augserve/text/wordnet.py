"""WordNet synonyms as EDA reads them, from Debian's WordNet 3.0 (``wordnet-base``) through nltk's reader.

A word's synonyms are the lemmas of every synset nltk finds for it (any part of speech, inflections undone by
morphy), written as EDA writes them: underscores and hyphens made spaces, lowercase, only a-z and spaces
kept, the word itself left out. A synonym of several words is a phrase. Unlike EDA, empty lemmas are dropped
and the list is sorted, so a choice among them does not follow PYTHONHASHSEED.

Debian ships the database without the ``lexnames`` file nltk opens first; it is written from the table in
the ``lexnames(5WN)`` man page into a cache folder holding a copy of the database (``$AUGSERVE_WORDNET`` names
another folder holding a complete database).
"""

from __future__ import annotations

import functools
import gzip
import os
import pathlib
import re
import shutil
import threading
import warnings

DEBIAN_WORDNET = pathlib.Path("/usr/share/wordnet")
LEXNAMES_MAN_PAGE = pathlib.Path("/usr/share/man/man5/lexnames.5WN.gz")
_CATEGORIES = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}  # lexnames' third field, by the file name's prefix
_LEXNAME_ROW = re.compile(r"^(\d\d)\t((noun|verb|adj|adv)\.\w+) *\t", re.M)
_NOT_KEPT = re.compile(r"[^a-z ]")
_READ = ("data.", "index.", "adj.exc", "adv.exc", "noun.exc", "verb.exc")  # what nltk opens
_MISSING = ("WordNet 3.0 is not installed: apt-get install wordnet-base wordnet-sense-index "
            "(or set AUGSERVE_WORDNET to a folder holding the WordNet database)")
_lock = threading.Lock()
_looking_up = threading.Lock()
MAX_LEMMA = 80  # longer than WordNet's longest lemma (71 characters)


def nltk_data() -> pathlib.Path:
    """The nltk data folder the copy lives in (as ``corpora/wordnet``): on ``nltk.data.path``, nltk's own
    ``nltk.corpus.wordnet`` (which the reference libraries read) finds it too."""
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "augserve" / "nltk_data"


def _cache_folder() -> pathlib.Path:
    return nltk_data() / "corpora" / "wordnet"


def lexnames(man_page: pathlib.Path = LEXNAMES_MAN_PAGE) -> str:
    """nltk's ``lexnames`` file (number, name, category per line) from the table in the man page."""
    rows = _LEXNAME_ROW.findall(gzip.decompress(man_page.read_bytes()).decode("utf-8", "replace"))
    if len(rows) < 45:
        raise RuntimeError(f"{man_page}: found {len(rows)} lexicographer files in its table, expected 45")
    return "".join(f"{number}\t{name}\t{_CATEGORIES[prefix]}\n" for number, name, prefix in rows)


def missing() -> str:
    """Why no WordNet can be read here ("" when one can), without reading it: steps refuse their spec with it."""
    if os.environ.get("AUGSERVE_WORDNET") or (_cache_folder() / "lexnames").is_file():
        return ""
    if (DEBIAN_WORDNET / "data.noun").is_file() and LEXNAMES_MAN_PAGE.is_file():
        return ""
    return _MISSING


def database() -> pathlib.Path:
    """A folder nltk can read: ``$AUGSERVE_WORDNET``, or a copy of Debian's database with a written ``lexnames``
    (a copy, not links: nltk refuses files that resolve outside its corpus folder)."""
    given = os.environ.get("AUGSERVE_WORDNET")
    if given:
        return pathlib.Path(given)
    folder = _cache_folder()
    if (folder / "lexnames").is_file():
        return folder
    if missing():
        raise RuntimeError(missing())
    building = folder.with_name(f"{folder.name}.{os.getpid()}.{threading.get_ident()}")
    building.mkdir(parents=True, exist_ok=True)
    for source in DEBIAN_WORDNET.iterdir():
        if source.name.startswith(_READ):
            shutil.copyfile(source, building / source.name)
    (building / "lexnames").write_text(lexnames())
    try:
        building.rename(folder)  # whole or absent, whoever else is writing it
    except OSError:
        shutil.rmtree(building)  # another process finished first
    return folder


@functools.cache
def reader():
    """nltk's WordNet reader on ``database()`` (opened once: about a second)."""
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    with _lock:
        folder = database()
        if str(folder) not in nltk.data.path:  # nltk reads only below its data paths
            nltk.data.path.append(str(folder))
        if str(nltk_data()) not in nltk.data.path:
            nltk.data.path.append(str(nltk_data()))
        with warnings.catch_warnings():  # "multilingual functions are not available": none are read
            warnings.simplefilter("ignore", UserWarning)
            return _reader_class(WordNetCorpusReader)(str(folder), None)


def _reader_class(base):
    class Reader(base):
        def map_wn(self, version="wordnet"):
            """No mapping to another WordNet's synsets (multilingual data): none is installed or read."""
            return None
    return Reader


def synonyms(word: str) -> tuple[tuple[str, ...], ...]:
    """The word's WordNet synonyms as EDA reads them, each a phrase of one or more words, sorted (none for a word
    longer than any lemma: such words are not looked up, nor kept in the cache)."""
    return _synonyms(word) if len(word) <= MAX_LEMMA else ()


@functools.lru_cache(maxsize=1 << 18)
def _synonyms(word: str) -> tuple[tuple[str, ...], ...]:
    phrases = set()
    wordnet = reader()
    with _looking_up:  # nltk's reader seeks and reads one shared file handle per part of speech
        lemmas = [lemma for synset in wordnet.synsets(word) for lemma in synset.lemma_names()]
    for lemma in lemmas:
        phrase = tuple(_NOT_KEPT.sub("", lemma.replace("_", " ").replace("-", " ").lower()).split())
        if phrase and phrase != (word.lower(),):  # nltk looks a word up lowercased
            phrases.add(phrase)
    return tuple(sorted(phrases))
