"""The batch a client hands its training loop: arrays, labels and what the server says about them.

NumPy first: torch is never imported here. A torch tensor is recognised only when the caller's
process already imported torch (it cannot be one otherwise). The framework adapters import this
room; it imports none of them (``to`` loads the torch one on first use).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

Array = Any  # a numpy array, or a torch tensor when the caller uses torch


def is_torch(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


@dataclass
class Batch:
    """An augmented batch. Unpacks as ``x, labels = batch`` for training loops.

    ``label_smoothing`` is the epsilon the server already applied to ``labels`` (0: none), so a
    loss does not smooth twice. ``indices`` are the dataset indices of a served dataset's samples;
    ``padding`` flags (bool per sample) those repeated only to give every shard as many samples
    (``even_shards``): training may keep them, as it keeps DistributedSampler's; an evaluation that
    counts each sample once leaves them out.
    ``normalize`` is the (mean, std) of a normalize step the server left to the caller (see
    ``defer_normalize``): ``normalized()`` applies it here, ``to(device)`` on the device.
    ``lengths`` (int64, one per sample) are waveforms' valid lengths along x's last axis after the pipeline
    (samples, or frames after ``log_mel``): the rest of a row is padding. None: every row is whole.
    A text pipeline's batch has sentences for ``x`` (a list of str, as ``Pipeline`` returns them in process)
    and each sentence's words in ``lengths``.
    """

    x: Array
    labels: Array | None = None
    label_smoothing: float = 0.0
    server_seconds: float = 0.0
    params: list[dict[str, Any]] | None = None
    indices: np.ndarray | None = None
    padding: np.ndarray | None = None  # a served dataset's: True where a sample is a repeat that evens the shards
    skipped: list[tuple[int, str]] | None = None  # a served dataset's samples left out of this batch, with why
    batch_index: int = 0
    num_batches: int = 0
    request_id: int = 0
    normalize: tuple[list[float], list[float]] | None = None
    out_dtype: str | None = None  # the dtype asked for, applied after a deferred normalize
    lengths: Array | None = None  # waveform rows' valid lengths, sentences' words (numpy, or torch for torch callers)

    def __iter__(self) -> Iterator[Array | None]:
        return iter((self.x, self.labels))

    def normalized(self) -> "Batch":
        """This batch with a deferred normalize applied where it is (numpy or torch), else itself."""
        if self.normalize is None:
            return self
        from augserve.normalize import normalize

        return dataclasses.replace(self, x=normalize(self.x, *self.normalize, self.out_dtype), normalize=None)

    def to(self, device, non_blocking: bool = False) -> "Batch":
        """This batch as torch tensors on ``device`` (pinned first when copying to CUDA), with a deferred
        normalize run there after the copy: uint8 crosses the bus, float comes out. Sentences stay a list."""
        from augserve.client.torch_device import as_tensor, to_device

        x = self.x if isinstance(self.x, list) else to_device(self.x, device, non_blocking)
        if self.normalize is not None:
            from augserve.normalize import normalize

            x = normalize(x, *self.normalize, self.out_dtype)
        labels = None if self.labels is None else to_device(self.labels, device, non_blocking)
        indices = None if self.indices is None else as_tensor(self.indices)
        padding = None if self.padding is None else as_tensor(self.padding)
        lengths = None if self.lengths is None else as_tensor(self.lengths)  # on the host, as indices: loop counts
        return dataclasses.replace(self, x=x, labels=labels, indices=indices, padding=padding, lengths=lengths,
                                   normalize=None)
