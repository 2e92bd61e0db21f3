"""Whether a client's requests travel through shared memory, decided by the first probe that reaches a server.

A client often starts before its server (a trainer and a server in one pod): a probe that reaches
no server decides nothing, so that call goes as bytes and the next call probes again. Only a server
that answers and cannot use the regions (another host behind a port forward, another user) turns
shared memory off for the client's life.
"""

from __future__ import annotations

import logging
import threading
import weakref

import grpc
import numpy as np

from augserve.client import codec
from augserve.framing import Framed
from augserve.shared_memory import Slot, SlotPool

PROBE = [{"op": "hflip", "p": 0.0}]  # the identity: checks the server can use this client's regions
NOT_REACHED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
log = logging.getLogger("augserve.client")


class SharedMemoryUse:
    def __init__(self, owner: object, wanted: bool):
        self.works: bool | None = None if wanted else False  # None: no server reached yet
        self.pool: SlotPool | None = None
        self.probing = threading.Lock()  # concurrent first calls: one probes, the others wait for its verdict
        self._owner = weakref.ref(owner)

    def usable(self) -> SlotPool | None:
        return self.pool if self.works else None

    def probe_request(self) -> tuple[Framed, Slot]:
        if self.pool is None:
            self.pool = SlotPool()
            weakref.finalize(self._owner(), self.pool.close)  # regions are unlinked even if close() is never called
        slot = self.pool.acquire()
        return codec.augment_request(np.zeros((1, 1, 1, 1), np.uint8), None, pipeline=PROBE, seed=0, slot=slot), slot

    def settle(self, slot: Slot, response: Framed | None = None, error: Exception | None = None) -> None:
        """Decide from the probe's answer (or its failure); a server not reached leaves it undecided."""
        try:
            if response is not None:
                codec.batch_from(response, slot=slot)  # the answer must come back in this slot's region
                self.works = True
                return
            if isinstance(error, grpc.RpcError) and error.code() in NOT_REACHED:
                return
            raise error
        except (grpc.RpcError, ValueError) as failed:
            reason = failed.details() if isinstance(failed, grpc.RpcError) else str(failed)
            log.warning("shared memory unavailable (%s); sending tensors as gRPC bytes", reason)
            self.works = False
        finally:
            self.pool.release(slot)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
