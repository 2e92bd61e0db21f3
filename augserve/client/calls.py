"""The rules ``Client`` and ``AsyncClient`` share: one set for the two twins, as plain functions and bookkeeping.

What a call sends is built in ``codec``; what is left here is what both clients do around the
calls: which answer belongs to which request on a stream, where a dropped dataset stream resumes,
and how discovery answers and failures read. The twins differ only in how they wait.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import grpc

from augserve import framing
from augserve.client import codec
from augserve.client.batch import Batch
from augserve.client.channel import describe
from augserve.client.errors import ServerError, from_rpc_error
from augserve.client.settings import ClientSettings
from augserve.shared_memory import Slot
from augserve.v1 import augserve_pb2 as pb

def error(settings: ClientSettings, rpc_error: grpc.RpcError) -> ServerError:
    """The ``ServerError`` a failed call raises, naming the targets the client was pointed at."""
    return from_rpc_error(rpc_error, describe(settings.targets))


def as_dict(message) -> dict[str, Any]:
    """A discovery message's set fields by name."""
    return {field.name: value for field, value in message.ListFields()}


def pipelines_of(response: pb.ListPipelinesResponse) -> dict[str, str]:
    """Served pipeline name -> description."""
    return {p.name: p.description for p in response.pipelines}


def datasets_of(response: pb.ListDatasetsResponse) -> list[dict[str, Any]]:
    return [as_dict(d) for d in response.datasets]


class InFlight:
    """A stream's requests sent and not yet answered, oldest first: after a failover they are sent again in
    order (they replay bit-identically), and each answer must be the oldest one's."""

    def __init__(self, release: Callable[[Slot | None], None]):
        self.sent: deque[codec.Sent] = deque()
        self._release = release

    def __len__(self) -> int:
        return len(self.sent)

    def add(self, sent: codec.Sent) -> bytes:
        self.sent.append(sent)
        return sent.wire

    def requests(self) -> list[bytes]:
        """What to send again on a new stream."""
        return [sent.wire for sent in self.sent]

    def answered(self, response: framing.Framed, targets) -> Batch:
        """The oldest request's batch (decoded before its slot is reused), that request done."""
        _, request, as_torch, slot = self.sent[0]
        answered = response.message.request_id
        if answered != request.request_id:
            raise ServerError(grpc.StatusCode.INTERNAL, f"stream answered request {answered}, "
                              f"expected {request.request_id}", describe(targets))
        batch = codec.batch_from(response, as_torch, slot, request.out_dtype)
        self.sent.popleft()
        self._release(slot)
        return batch

    def release_all(self) -> None:
        while self.sent:
            self._release(self.sent.popleft().slot)


class DatasetResume:
    """Where a dataset stream stands: the next undelivered batch, and how many failovers it used."""

    def __init__(self, dataset: str, pipeline, batch_size: int, *, start_batch: int, **options):
        self.dataset, self.pipeline, self.batch_size, self.options = dataset, pipeline, batch_size, options
        self.position, self.attempt = start_batch, 0

    def request(self) -> pb.StreamDatasetRequest:
        """The request that resumes the stream at the next undelivered batch."""
        return codec.dataset_request(self.dataset, self.pipeline, self.batch_size, start_batch=self.position,
                                     **self.options)

    def delivered(self, received: framing.Framed, slot: Slot | None) -> Batch | None:
        """A message's batch (None: every sample of it was skipped); the stream resumes after it."""
        self.position = received.message.batch_index + 1
        return codec.dataset_batch_from(received, slot, self.options.get("out_dtype"))

    def after(self, rpc_error: grpc.RpcError | None, settings: ClientSettings, shared: bool, lost: bool = False,
              stalled: bool = False) -> float | None:
        """Seconds to wait before resuming on another replica; None when the server has no shared-memory
        dataset stream (resume at once with bytes). Raises the ``ServerError`` when it may not resume."""
        if shared and rpc_error is not None and rpc_error.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        delay = settings.failover_delay(rpc_error, self.attempt, lost=lost, stalled=stalled)
        self.attempt += 1
        return delay
