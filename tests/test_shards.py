"""How an epoch of a served dataset is dealt out to shards: DistributedSampler's split and padding."""

import math

import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from augserve.server.datasets import epoch_order, shard_batches

CASES = [(size, batch, shards) for size in (1, 3, 7, 64, 100, 1797) for batch in (1, 5, 32, 449)
         for shards in (1, 2, 3, 4, 8, 13)]


@pytest.mark.parametrize("size, batch_size, shards", CASES)
def test_even_shards_are_distributed_samplers_split_of_the_epoch_order(size, batch_size, shards):
    """Every shard as many samples and batches as the others (ranks end together), padded by fewer than
    ``shards`` repeats of the epoch's first samples, flagged, each shard's last; never whole batches of padding."""
    order = epoch_order(size, 7, 3)
    per_shard = math.ceil(size / shards)
    for shard in range(shards):
        batches = shard_batches(size, batch_size, 7, 3, shard, shards, even=True)
        sampler = list(DistributedSampler(range(size), num_replicas=shards, rank=shard, shuffle=False))
        assert torch.cat([b.indices for b in batches]).tolist() == order[sampler].tolist()
        assert [len(b.indices) for b in batches] == [len(c) for c in torch.arange(per_shard).split(batch_size)]
        padding = torch.cat([b.padding for b in batches])
        assert padding.tolist() == [shard + k * shards >= size for k in range(per_shard)]
        assert not padding[:-1].any()  # at most one, the shard's last
        indices = torch.cat([b.indices for b in batches])
        assert len(set(indices.tolist())) == len(indices)  # no index twice in a shard: padding flags are by index


@pytest.mark.parametrize("size, batch_size, shards", CASES)
def test_exactly_once_shards_cover_the_epoch_and_differ_by_one_sample(size, batch_size, shards):
    everything = []
    for shard in range(shards):
        batches = shard_batches(size, batch_size, 7, 3, shard, shards)
        indices = torch.cat([b.indices for b in batches]).tolist() if batches else []
        assert len(indices) in (size // shards, size // shards + 1)
        assert all(len(b.indices) == batch_size for b in batches[:-1]) and not any(b.padding.any() for b in batches)
        everything += indices
    assert sorted(everything) == list(range(size))


def test_a_shards_batches_depend_only_on_seed_and_epoch():
    first = [b.indices.tolist() for b in shard_batches(1797, 32, 5, 2, 3, 8, even=True)]
    assert first == [b.indices.tolist() for b in shard_batches(1797, 32, 5, 2, 3, 8, even=True)]
    assert first != [b.indices.tolist() for b in shard_batches(1797, 32, 5, 3, 3, 8, even=True)]
