"""Batched kernels on word-id rows (B, L) with per-row lengths: no loop over the batch anywhere.

Edits that change a sentence's length (deletion, insertion, multi-word synonyms) are all one operation:
every entry of a row becomes a phrase of 0..K words, and ``expand`` writes the phrases out in order.
"""

from __future__ import annotations

import torch


def valid(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) bool: the positions inside each row's length."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def first_positions(ids: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """(B, L) int64: for each position, the first position in its row holding the same word (padding: itself)."""
    width = ids.shape[1]
    positions = torch.arange(width, device=ids.device).expand_as(ids)
    key = torch.where(inside, ids, -1 - positions)  # padding never equals a word or other padding
    key, order = torch.sort(key, dim=1, stable=True)  # equal words keep their order: the first one leads
    starts = torch.ones_like(inside)
    starts[:, 1:] = key[:, 1:] != key[:, :-1]
    leader = torch.cummax(torch.where(starts, positions, 0), dim=1).values
    first = torch.empty_like(ids)
    first.scatter_(1, order, order.gather(1, leader))
    return first


def lowest(scores: torch.Tensor, candidate: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: in each row the ``count`` candidates with the lowest scores (all of them if fewer)."""
    order = torch.argsort(torch.where(candidate, scores, torch.inf), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return candidate & (rank < count[:, None])


def pick(start: torch.Tensor, count: torch.Tensor, uniform: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    """One of ``count`` entries of ``choices`` from ``start`` by a uniform in [0, 1) (any shape; count > 0 where
    read)."""
    offset = torch.minimum((uniform * count).long(), (count - 1).clamp(min=0))
    return choices[(start + offset).clamp(max=max(choices.numel() - 1, 0))] if choices.numel() else start


def expand(phrase: torch.Tensor, active: torch.Tensor, phrases: torch.Tensor, phrase_lengths: torch.Tensor,
           max_words: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each active entry of ``phrase`` (B, S) written out as its row of ``phrases`` (P, K), in order.

    Returns the new rows (B, W), their lengths (at most ``max_words``: the rest is cut) and how many words each
    row lost to the cut.
    """
    size = torch.where(active, phrase_lengths[phrase], 0)
    ends = torch.cumsum(size, dim=1)
    total = ends[:, -1] if ends.shape[1] else torch.zeros_like(size[:, 0])
    lengths = total.clamp(max=max_words)
    width = max(int(lengths.max()), 1)
    out = torch.zeros(phrase.shape[0], width + 1, dtype=phrases.dtype, device=phrase.device)
    row, column = active.nonzero(as_tuple=True)  # the active entries alone: padding is most of a ragged batch
    entry, count, start = phrase[row, column], size[row, column], (ends - size)[row, column]
    room = lengths[row]
    longest = int(count.max()) if count.numel() else 0  # the longest phrase written, not the table's
    for k in range(min(phrases.shape[1], longest)):  # a loop over phrase positions, not samples
        position = start + k
        write = (k < count) & (position < room)
        out[row, torch.where(write, position, width)] = phrases[entry, k]  # column ``width``: dropped below
    return out[:, :width], lengths, total - lengths
