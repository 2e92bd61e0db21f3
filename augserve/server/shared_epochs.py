"""Shared epochs: a served batch computed once for every stream that asks for the same one.

A sample is a pure function of its replay identity (dataset, pipeline, strength, seed, epoch, batch size,
shard, output options), so jobs that stream the same epoch (a sweep, several seeds of a model on one input
pipeline) would each pay for the same bytes. Streams whose identity is equal share each batch: the
first to ask computes it (and its tenant pays for it: that job runs through the batcher as it would
alone), the others wait for that answer. A window of recent answers, bounded in bytes, serves the
streams that follow later; one that falls behind the window gets its batch computed again, identical by
replay, never skipped. Streams writing into their own client's regions (same host) do not share: their
answers live in those regions. On by default (``--shared-epoch-bytes``, 0 turns it off): sharing cannot
change a byte that a stream receives.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Callable

from augserve.v1 import augserve_pb2 as pb


def identity(request: pb.StreamDatasetRequest) -> bytes:
    """Everything that decides a stream's batches, except where it starts: equal only for equal epochs."""
    same = pb.StreamDatasetRequest()
    same.CopyFrom(request)
    same.start_batch = 0
    return same.SerializeToString(deterministic=True)


@dataclass(eq=False)
class _Entry:
    task: asyncio.Future  # -> framing.Framed (a pb.DatasetBatch)
    waiters: int = 1
    nbytes: int = 0


class SharedEpochs:
    def __init__(self, max_bytes: int, metrics):
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.bytes = 0  # answers kept in the window
        self._entries: collections.OrderedDict[tuple[bytes, int], _Entry] = collections.OrderedDict()

    def batch(self, key: tuple[bytes, int], compute: Callable[[], asyncio.Future]) -> asyncio.Future:
        """The future answer for batch ``key`` = (identity, position): shared when a stream with the same
        identity asked for it and it is still in flight or in the window, else ``compute()``'s."""
        entry = self._entries.get(key) if self.max_bytes else None
        if entry is not None and not entry.task.cancelled():
            entry.waiters += 1
            self._entries.move_to_end(key)
            self.metrics.shared_batches.labels("shared").inc()
            return entry.task
        task = compute()
        self.metrics.shared_batches.labels("computed").inc()
        if self.max_bytes:
            entry = self._entries[key] = _Entry(task)
            task.add_done_callback(lambda done: self._settled(key, entry))
        return task

    def release(self, key: tuple[bytes, int], task: asyncio.Future) -> None:
        """A stream no longer waits for this batch (it left): the work stops when nobody else waits."""
        entry = self._entries.get(key)
        if entry is not None and entry.task is task:
            entry.waiters -= 1
            if entry.waiters > 0:
                return
        if not task.done():
            task.cancel()
            if entry is not None and entry.task is task:  # nobody may share it while the cancel is under way
                del self._entries[key]

    def _settled(self, key: tuple[bytes, int], entry: _Entry) -> None:
        if self._entries.get(key) is not entry:
            return
        if entry.task.cancelled() or entry.task.exception() is not None:
            del self._entries[key]  # a failed or abandoned batch is computed again by whoever asks next
            return
        entry.nbytes = entry.task.result().nbytes
        self.bytes += entry.nbytes
        for oldest in [k for k, e in self._entries.items() if e.task.done()]:  # least recently asked first
            if self.bytes <= self.max_bytes:
                break
            self.bytes -= self._entries.pop(oldest).nbytes
        self.metrics.shared_window_bytes.set(self.bytes)
