"""What a data-parallel epoch over a served dataset must be, for the DDP example's tests on one host and many."""

from __future__ import annotations

DIGITS = 1797


def assert_even_ranks_cover_the_epoch(ranks: list[dict], epochs: int, shards: int, batch_size: int) -> None:
    """Every rank the same number of full batches; together the whole epoch, padded as DistributedSampler pads
    (fewer than shards * batch_size samples twice)."""
    for epoch in map(str, range(epochs)):
        assert len({rank[epoch]["batches"] for rank in ranks}) == 1
        together = [i for rank in ranks for i in rank[epoch]["ids"]]
        assert len(together) == ranks[0][epoch]["batches"] * len(ranks) * batch_size
        assert sorted(set(together)) == list(range(DIGITS)) and len(together) - DIGITS < shards * batch_size
    assert ranks[0]["0"]["ids"] != ranks[0]["1"]["ids"]  # a new shuffle each epoch
