"""``RemoteDataset``: an IterableDataset over a dataset the server reads and augments itself."""

from __future__ import annotations

import os
from typing import Iterator

from torch.utils.data import IterableDataset, get_worker_info

from augserve.client.batch import Batch
from augserve.client.sync import Client
from augserve.client.torch_device import normalize_option


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class RemoteDataset(IterableDataset):
    """Augmented batches of a served dataset; use with ``DataLoader(remote, batch_size=None)``.

    Workers call the server, so give the DataLoader ``multiprocessing_context="forkserver"`` (or
    ``"spawn"``) in a process that has opened channels: gRPC cannot run in a child forked after that.

    Shards itself by ``torch.distributed`` rank and DataLoader worker: shard ``rank * workers +
    worker`` of ``world * workers``, so each sample of an epoch reaches exactly one rank and
    worker. With several ranks every shard gets as many samples and batches, so the ranks end an
    epoch together (``even_shards``; the epoch is padded with its first samples, as torch's
    DistributedSampler pads: fewer than ``world * workers`` appear twice, flagged in
    ``Batch.padding``); one process gets the epoch exactly once. ``shard=(index, count)`` overrides
    the rank/world part. The position is remembered: a dropped stream resumes on another replica
    from the next undelivered batch. Call
    ``set_epoch`` before each epoch (the dataset is copied into every worker). Batches are torch
    tensors; ``normalize="client"`` (the default) brings them as uint8 and runs a pipeline's final
    normalize in this process, ``"server"`` there (float on the wire). ``strength`` scales the
    pipeline's magnitudes, as in ``RemoteAugment``.
    """

    def __init__(self, client: Client, dataset: str, pipeline, batch_size: int, *, epoch: int = 0, seed: int = 0,
                 shard: tuple[int, int] | None = None, out_dtype: str | None = None, normalize: str = "client",
                 strength: float | None = None, even_shards: bool | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size: expected at least 1, got {batch_size}")
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard: expected (index, count) with 0 <= index < count, got {shard}")
        self.client = client
        self.dataset = dataset
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.epoch = epoch
        self.seed = seed
        self.shard = shard
        self.out_dtype = out_dtype
        self.normalize = normalize_option(normalize)
        self.strength = strength  # read when an epoch starts: a callback may change it between epochs
        self.even_shards = even_shards  # None: when there are several ranks (they must end each epoch together)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard_of_this_process(self) -> tuple[int, int]:
        """(shard index, shard count) for this rank and DataLoader worker."""
        rank, world = self.shard or _rank_and_world()
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        return rank * workers + worker_id, world * workers

    def __iter__(self) -> Iterator[Batch]:
        index, count = self.shard_of_this_process()
        even = (self.shard or _rank_and_world())[1] > 1 if self.even_shards is None else self.even_shards
        for batch in self.client.stream_dataset(self.dataset, self.pipeline, self.batch_size, epoch=self.epoch,
                                                seed=self.seed, shard_index=index, num_shards=count,
                                                out_dtype=self.out_dtype, defer_normalize=self.normalize == "client",
                                                strength=self.strength, even_shards=even):
            yield batch.to("cpu")
