"""Output regions a same-host client offers on StreamDatasetShared, for the server to write batches into.

The client owns every region and offers each for one batch: the server takes one when a batch is due
for the device, and the answer's ``x.shm`` names it. With none offered (or one too small), the batch
travels inline, so a slow client never stalls the stream and a broken offer costs only speed.
"""

from __future__ import annotations

import collections
from typing import AsyncIterator

import grpc

from augserve.server.errors import Refused
from augserve.v1 import augserve_pb2 as pb

MAX_OFFERED = 16  # regions offered and not yet written (the Python client keeps 4)


class OfferedRegions:
    def __init__(self):
        self._regions: collections.deque[pb.SharedMemoryRef] = collections.deque()
        self.refused: Refused | None = None  # the first bad message: the stream ends with it

    def add(self, message: pb.DatasetStreamMessage, position: int) -> None:
        if position and message.HasField("start"):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"request {position} of the stream: expected "
                          "only outputs (start comes first, once)")
        if len(self._regions) + len(message.outputs) > MAX_OFFERED:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"request {position} of the stream: expected at most "
                          f"{MAX_OFFERED} output regions offered and not yet written")
        self._regions.extend(message.outputs)

    async def read(self, messages: AsyncIterator[pb.DatasetStreamMessage]) -> None:
        """Every message after the first."""
        position = 1
        try:
            async for message in messages:
                self.add(message, position)
                position += 1
        except Refused as refused:  # also undecodable bytes, met in the message's place
            self.refused = refused

    def take(self) -> pb.SharedMemoryRef | None:
        return self._regions.popleft() if self._regions and self.refused is None else None

    def give_back(self, region: pb.SharedMemoryRef) -> None:
        """A region taken for a batch that had nothing left to write (every sample skipped)."""
        self._regions.appendleft(region)
