"""The client side of StreamDatasetShared: output regions it offers for the server to write batches into."""

from __future__ import annotations

import grpc

from augserve import framing
from augserve.client.errors import ServerError
from augserve.shared_memory import Slot, SlotPool
from augserve.v1 import augserve_pb2 as pb

DATASET_OFFERS = 4  # regions a stream keeps offered (the server reads 3 batches ahead)


class DatasetOffers:
    """One stream's offered regions: ``DATASET_OFFERS`` of them, each sized for a full batch once the
    stream's first batch says how large that is (``sizes`` remembers it for the next epoch of the stream)."""

    def __init__(self, pool: SlotPool, request: pb.StreamDatasetRequest, sizes: dict[tuple, int]):
        self.pool, self.request, self.sizes = pool, request, sizes
        self.key = (request.dataset, request.pipeline.SerializeToString(), request.batch_size, request.out_dtype,
                    request.defer_normalize)
        self.offered: dict[str, Slot] = {}

    def first(self) -> pb.DatasetStreamMessage:
        """The stream's first message: the request and the regions a previous epoch sized."""
        return self._top_up(pb.DatasetStreamMessage(start=self.request))

    def more(self) -> pb.DatasetStreamMessage | None:
        """Regions in place of those used since, or None when nothing is missing."""
        message = self._top_up(pb.DatasetStreamMessage())
        return message if message.outputs else None

    def _top_up(self, message: pb.DatasetStreamMessage) -> pb.DatasetStreamMessage:
        nbytes = self.sizes.get(self.key)
        while nbytes and len(self.offered) < DATASET_OFFERS:
            region = (slot := self.pool.acquire()).region("out", nbytes)
            self.offered[region.name] = slot
            message.outputs.add(name=region.name, size=region.size)
        return message

    def slot_for(self, received: framing.Framed) -> Slot | None:
        """The slot the server wrote this batch into (None: inline); learns the room a full batch takes."""
        message = received.message
        x = message.batch.x
        slot = self.offered.pop(x.shm.name, None) if x.HasField("shm") else None
        if x.HasField("shm") and slot is None:
            raise ServerError(grpc.StatusCode.INTERNAL, f"the server answered in region {x.shm.name!r}, which "
                              "this stream did not offer")
        if message.sample_indices:
            inline = received.payload(framing.BATCH + framing.ANSWER_X)
            sent = x.shm.size if slot is not None else len(x.data) if inline is None else inline.nbytes
            self.sizes[self.key] = sent // len(message.sample_indices) * self.request.batch_size
        return slot

    def close(self, finished: bool) -> None:
        """Unused regions back to the pool; those of a stream cut short are never reused (its server may
        still write them)."""
        for slot in self.offered.values():
            (self.pool.release if finished else self.pool.discard)(slot)
        self.offered.clear()
