"""The rules ``Client`` and ``AsyncClient`` share: one set for the two twins, as plain functions and bookkeeping.

What a call sends is built in ``codec``; what is left here is what both clients do around the
calls: which answer belongs to which request on a stream, where a dropped dataset stream resumes,
and how discovery answers and failures read. The twins differ only in how they wait.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

import grpc

from augserve import framing
from augserve.client import codec
from augserve.client.batch import Batch
from augserve.client.channel import SERVICE, SERVING, STATUS_NAMES, HealthCheckRequest, describe
from augserve.client.errors import ServerError, Unavailable, from_rpc_error
from augserve.client.settings import ClientSettings
from augserve.shared_memory import Slot
from augserve.v1 import augserve_pb2 as pb

HEALTH = HealthCheckRequest(service=SERVICE)  # the name the channel's load balancing checks too
POLL_S = 0.25  # between health checks of a server that answers but is not SERVING yet (warming up)
DIAGNOSE_S = 0.2  # a last fail-fast check after a wait in vain, for the channel's own reason (connection refused, TLS)


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


class Readiness:
    """Whether a call first waits for a server that reports SERVING, instead of failing fast.

    ``wait_for_ready=None`` (the default): until a server was reached, so a client started before its server
    waits for it; after that calls fail fast and streams fail over, so a lost server is noticed at once.
    True: every call waits (gRPC's wait_for_ready on each call, and a health wait before each stream or resume,
    since a stream has no deadline to bound gRPC's own wait). False: never. A wait is bounded by the call's timeout.
    """

    def __init__(self, wait_for_ready: bool | None):
        self.mode, self.reached = wait_for_ready, False

    def first(self, stream: bool = False) -> bool:
        return self.mode is not False and (not self.reached or (self.mode is True and stream))


def deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def left(until: float | None) -> float | None:
    return None if until is None else max(0.0, until - time.monotonic())


def health_answer(reply=None, rpc_error: grpc.RpcError | None = None) -> tuple[bool, str | None]:
    """(ready, why not) from one health check: SERVING, or no health service at all (UNIMPLEMENTED: the server
    answered, and the channel's load balancing does not check it either), is ready. A deadline says nothing."""
    if rpc_error is None:
        return reply.status == SERVING, STATUS_NAMES.get(reply.status, str(reply.status))
    if rpc_error.code() == grpc.StatusCode.UNIMPLEMENTED:
        return True, None
    if rpc_error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return False, None
    return False, f"{rpc_error.code().name}: {rpc_error.details()}"


def not_ready(settings: ClientSettings, timeout: float | None, last: str | None) -> Unavailable:
    """The error of a wait for a SERVING server in vain, naming the targets, the bound and the last reason."""
    bound = "" if timeout is None else f" within {timeout:g} s"
    return Unavailable(grpc.StatusCode.UNAVAILABLE, f"no server reported SERVING{bound}" +
                       (f" (last: {last})" if last else ""), describe(settings.targets))
