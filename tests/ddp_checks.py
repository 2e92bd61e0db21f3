"""What a data-parallel epoch over a served dataset must be, for the DDP example's tests on one host and many."""

from __future__ import annotations

import math

DIGITS = 1797


def assert_even_ranks_cover_the_epoch(ranks: list[dict], epochs: int, shards: int, batch_size: int,
                                      size: int = DIGITS) -> None:
    """Every rank the same batches and samples; together the whole epoch of ``size`` samples, padded as
    DistributedSampler pads: each of the ``shards`` (ranks times workers) ceil(size / shards) samples, fewer than
    ``shards`` twice."""
    per_shard = math.ceil(size / shards)
    for epoch in map(str, range(epochs)):
        assert {rank[epoch]["batches"] for rank in ranks} == {shards // len(ranks) * math.ceil(per_shard / batch_size)}
        assert {len(rank[epoch]["ids"]) for rank in ranks} == {shards // len(ranks) * per_shard}
        together = [i for rank in ranks for i in rank[epoch]["ids"]]
        assert len(together) == per_shard * shards and sorted(set(together)) == list(range(size))
    assert ranks[0]["0"]["ids"] != ranks[0]["1"]["ids"]  # a new shuffle each epoch
