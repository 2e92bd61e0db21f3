"""``RemoteAugment``: a DataLoader whose workers only load and decode; the server augments (torch adapter)."""

from __future__ import annotations

from typing import Iterable, Iterator

import torch
from torch.utils.data import Dataset

from augserve.client.batch import Batch
from augserve.client.fork_safety import make_workers_fork_safe
from augserve.client.sync import Client
from augserve.client.torch_device import as_tensor, normalize_option
from augserve.random import sample_keys

class IndexedDataset(Dataset):
    """Wraps a map-style dataset so items are ``(x, y, index)``: keys that follow a sample through shuffles."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index]
        return x, y, index


class RemoteAugment:
    """Iterate ``loader`` (uint8 ``(x, y)`` or ``(x, y, index)`` batches), augmented on the server.

    Yields ``Batch`` objects (``x, labels = batch`` works) with ``prefetch`` batches in flight.
    A sample's key is ``index + (epoch << 32)`` when the loader yields dataset indices (see
    ``IndexedDataset``), else its position in the epoch: either way the same run replays.
    The epoch advances by one per pass; ``set_epoch`` pins it, as with ``DistributedSampler``.
    ``strength`` scales the pipeline's magnitudes (None or 1: as specified; see ``Pipeline.at_strength``)
    and may be changed between passes (``AdaptiveStrength`` does).
    With ``device="cuda"`` batches arrive there through pinned memory with ``non_blocking=True``.
    ``normalize="client"`` (the default) leaves a pipeline's final normalize step to this side: uint8
    crosses the wire and the bus, and the normalize runs on ``device`` after the copy (same values,
    bit for bit); ``"server"`` runs it on the server and ships float.
    A DataLoader's workers keep forking (they only load data; gRPC stays in this process), so a script
    needs no ``__main__`` guard; where gRPC's fork support is on they start from the forkserver
    instead (see ``fork_safety``).
    """

    def __init__(self, loader: Iterable, client: Client, pipeline, *, seed: int = 0, num_classes: int | None = None,
                 out_dtype: str | None = None, prefetch: int = 4, device: torch.device | str | None = None,
                 epoch: int = 0, normalize: str = "client", strength: float | None = None):
        self.loader = loader
        self.client = client
        self.pipeline = pipeline
        self.seed = seed
        self.num_classes = num_classes
        self.out_dtype = out_dtype
        self.prefetch = prefetch
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.epoch = epoch
        self.normalize = normalize_option(normalize)
        self.strength = strength  # read at the start of each pass: a callback may change it between epochs

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.loader)

    def _with_keys(self, batches: Iterator, epoch: int) -> Iterator[tuple]:
        position = 0
        for item in batches:
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise ValueError(f"RemoteAugment: expected loader batches (x, y) or (x, y, index), got {type(item)}")
            x, y = item[0], item[1]
            indices = as_tensor(item[2]) if len(item) == 3 else torch.arange(position, position + len(x))
            position += len(x)
            yield x, y, sample_keys(indices.to(torch.int64), epoch)

    def __iter__(self) -> Iterator[Batch]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        make_workers_fork_safe(self.loader)
        batches = iter(self.loader)  # workers start before the stream's own gRPC threads do
        results = self.client.map(self._with_keys(batches, epoch), pipeline=self.pipeline, seed=self.seed,
                                  num_classes=self.num_classes, out_dtype=self.out_dtype, prefetch=self.prefetch,
                                  defer_normalize=self.normalize == "client", strength=self.strength)
        for batch in results:
            yield batch.to(self.device, non_blocking=True)
