"""Refills masked words with a masked language model: a Hugging Face checkpoint on disk, loaded once per path and
device, that proposes one whole word for each masked word of a batch in one forward pass.

A masked word becomes one mask token; its refill is drawn from the model's top-k whole-word candidates at that
token (no special tokens, no subword continuations, not the word itself) by an inverse-CDF lookup of a uniform
the step drew, so a (seed, key) refills the same words whatever else is in the batch. The model's own rounding
differs between devices, which can move a uniform that sits on the boundary between two candidates.
"""

from __future__ import annotations

import os
import pathlib
import re
import threading
from types import ModuleType

import torch

from augserve.named import Named
from augserve.spec import clipped, shown

WORD = re.compile(r"[a-z]+")  # a refill is one word as the text steps tokenize: lowercase letters only
PROBE = "the"  # tokenized after another word, it shows how this tokenizer marks the start of a word


def _transformers() -> ModuleType:
    try:
        import transformers
    except ImportError:
        raise ImportError("contextual substitution needs transformers, which is not installed: "
                          "pip install 'augserve[text-lm]'; the other text steps work without it") from None
    return transformers


def _why(error: Exception) -> str:
    """The first line of a loader's error (transformers lists every model type it knows after it)."""
    return clipped((str(error).strip().splitlines() or [type(error).__name__])[0])


class MaskedLM:
    """A masked-LM checkpoint and its tokenizer on one device; ``fill`` is safe to call from several threads."""

    def __init__(self, path: str, device: torch.device):
        transformers = _transformers()
        where = shown(path)
        if not pathlib.Path(path).is_dir():
            raise ValueError(f"no masked-LM checkpoint at {where}: give the folder that a model's and its "
                             "tokenizer's save_pretrained wrote")
        try:
            model, info = transformers.AutoModelForMaskedLM.from_pretrained(path, local_files_only=True,
                                                                           output_loading_info=True)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{where} is not a masked-LM checkpoint that transformers can load ({_why(error)}); "
                             "give a folder holding a fill-mask model (BERT, RoBERTa, ...) and its tokenizer") from None
        if info["missing_keys"]:
            raise ValueError(f"{where} lacks the weights of {', '.join(sorted(info['missing_keys'])[:3])}, ...: a "
                             "base model without its masked-LM head would refill words at random; give a "
                             "checkpoint saved from a *ForMaskedLM model")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            if len(tokenizer) <= len(tokenizer.all_special_ids):  # what transformers 5 makes of no vocabulary
                raise ValueError("an empty vocabulary")
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"no tokenizer beside the model at {where} ({_why(error)}): save the model's "
                             "tokenizer into the same folder with save_pretrained") from None
        if tokenizer.mask_token is None or tokenizer.pad_token is None:
            raise ValueError(f"the tokenizer at {where} has no mask or no padding token: give a masked-LM "
                             "checkpoint's own tokenizer")
        self.path, self.device = path, device
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_tokens = min(tokenizer.model_max_length,
                              getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length)
        self._tokenizing = threading.Lock()  # a fast tokenizer sets its padding on the shared backend per call
        self._forms = self._whole_words(model.get_input_embeddings().num_embeddings)
        self._tokens_of: dict[str, list[int]] = {}
        for token, form in enumerate(self._forms):
            if form is not None:
                self._tokens_of.setdefault(form, []).append(token)
        if len(self._tokens_of) < 2:
            raise ValueError(f"the vocabulary at {where} holds fewer than two whole words of letters: nothing "
                             "to refill a word with")
        self._whole = torch.tensor([form is not None for form in self._forms], device=device)
        self._candidates = int(self._whole.sum())

    def _whole_words(self, size: int) -> list[str | None]:
        """Each token's word (lowercase letters) where it starts a word and is nothing but letters, else None."""
        probe = self.tokenizer.tokenize(f"a {PROBE}")[-1]
        if not probe.endswith(PROBE):
            raise ValueError(f"the tokenizer at {shown(self.path)} splits {PROBE!r} into pieces ({probe!r} last): "
                             "give an English masked-LM checkpoint")
        marker = probe.removesuffix(PROBE)  # '' (WordPiece), 'Ġ' (byte-level BPE), '▁' (SentencePiece)
        continuation = getattr(getattr(self.tokenizer, "backend_tokenizer", None), "model", None)
        continuation = getattr(continuation, "continuing_subword_prefix", None) or "##"
        special = set(self.tokenizer.all_special_ids)
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(min(size, len(self.tokenizer)))))
        forms: list[str | None] = [None] * size
        for index, token in enumerate(tokens):
            if index in special or token is None:
                continue
            if marker:
                word = token.removeprefix(marker) if token.startswith(marker) else ""
            else:
                word = "" if token.startswith(continuation) else token
            word = word.lower()
            if WORD.fullmatch(word):
                forms[index] = word
        return forms

    def fill(self, words: list[str], ids: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor,
             uniforms: torch.Tensor, top_k: int) -> tuple[list[str], torch.Tensor]:
        """Refill the masked words of a batch.

        ``ids`` (B, L) int64 index ``words``; a sample's words are its first ``lengths`` (B,) ones. ``mask`` (B, L)
        bool picks the words to refill (past a sample's length it is ignored), ``uniforms`` (B, L) in [0, 1) pick
        among the ``top_k`` candidates (near 0: the likeliest). Returns ``(added, new_ids)``: the refills that
        are not in ``words`` yet, in order of first use, and (B, L) int64 on ``ids``' device indexing
        ``words + added``; unmasked positions keep their id. A masked word past the tokens the model reads
        (``max_tokens``, counting subwords) keeps its own.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        if mask.shape != ids.shape or uniforms.shape != ids.shape or lengths.shape != ids.shape[:1]:
            raise ValueError(f"ids, mask and uniforms must share one (B, L) shape and lengths be (B,): got "
                             f"{tuple(ids.shape)}, {tuple(mask.shape)}, {tuple(uniforms.shape)}, "
                             f"{tuple(lengths.shape)}")
        positions = torch.arange(ids.shape[1], device=self.device)
        mask = mask.to(self.device) & (positions < lengths.to(self.device)[:, None])
        if not mask.any():
            return [], ids.clone()
        rows, sizes, masked = ids.tolist(), lengths.tolist(), mask.tolist()
        token, special = self.tokenizer.mask_token, set(self.tokenizer.all_special_tokens)
        shown = [self.tokenizer.unk_token or "" if word in special else word for word in words]  # a sentence's
        # own "<mask>" would be read as a mask (and "</s>" as an end): such words are shown to the model as unknown
        texts = [" ".join(token if hidden else shown[word] for word, hidden in zip(row[:size], flags[:size]))
                 for row, size, flags in zip(rows, sizes, masked)]
        with self._tokenizing:
            encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                     return_tensors="pt")
        encoded = {name: tensor.to(self.device) for name, tensor in encoded.items()}
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        at_masks = encoded["input_ids"] == self.tokenizer.mask_token_id
        # The k-th mask token of a row is its k-th masked word; truncation keeps a prefix of them.
        kept = mask & (mask.cumsum(1) <= at_masks.sum(1, keepdim=True))
        logits = logits[at_masks].float()  # (M, V), rows in the order of ``kept``'s positions
        logits = logits.masked_fill(~self._whole, float("-inf"))
        originals = [words[word] for word in ids[kept.to(ids.device)].tolist()]
        own = [(row, token) for row, word in enumerate(originals) for token in self._tokens_of.get(word, ())]
        if own:
            logits[tuple(torch.tensor(own, device=self.device).T)] = float("-inf")
        k = min(top_k, self._candidates)
        scores, candidates = logits.topk(k, dim=1)
        cdf = scores.softmax(1).cumsum(1)
        cdf = cdf / cdf[:, -1:]  # exactly 1 from the last candidate with any probability on
        pick = (cdf <= uniforms.to(self.device)[kept][:, None]).sum(1).clamp(max=k - 1)
        chosen = [self._forms[token] for token in candidates.gather(1, pick[:, None])[:, 0].tolist()]
        index = {word: position for position, word in enumerate(words)}
        added: list[str] = []
        for word in chosen:
            if word not in index:
                index[word] = len(words) + len(added)
                added.append(word)
        new_ids = ids.clone()
        new_ids[kept.to(ids.device)] = torch.tensor([index[word] for word in chosen], dtype=ids.dtype,
                                                    device=ids.device)
        return added, new_ids


_loaded: dict[tuple[str, torch.device], MaskedLM] = {}
_loading: dict[tuple[str, torch.device], threading.Lock] = {}  # one per key: a load blocks only its askers
_lock = threading.Lock()  # held for dictionary reads and writes only, never for a load


def load(path: str | os.PathLike, device: torch.device | str = "cpu") -> MaskedLM:
    """The checkpoint at ``path`` on ``device``, loaded the first time it is asked for (once: a second asker
    waits for the first). ImportError when transformers is missing; ValueError when ``path`` holds no masked LM."""
    key = (str(pathlib.Path(path).resolve()), torch.device(device))
    with _lock:
        if key in _loaded:
            return _loaded[key]
        loading = _loading.setdefault(key, threading.Lock())
    with loading:
        with _lock:
            if key in _loaded:
                return _loaded[key]
        model = MaskedLM(*key)
        with _lock:
            _loaded[key] = model
        return model


MODELS: Named[str] = Named("masked language model", "register one in process with "
                           "augserve.text.masked_lm.register(name, path); a server names its own under "
                           "language_models: in its config file")


def register(name: str, path: str | os.PathLike) -> None:
    """Name the checkpoint folder at ``path`` for ``contextual_substitution``'s ``model`` field (loaded on first use)."""
    MODELS.put(name, str(path))


def named(name: str, device: torch.device | str = "cpu") -> MaskedLM:
    """The model registered as ``name``, on ``device``; ValueError if none is, or its folder holds no masked LM."""
    try:
        path = MODELS.get(name)
    except KeyError:
        raise ValueError(MODELS.unknown_message(name)) from None
    return load(path, device)
