"""One request through the server: refused while draining, built, run, answered, counted.

Every request path (Augment, AugmentStream, the dataset streams) answers through ``Answers.answer``,
so each one is metered the same way and every failure reaches its caller as ``Refused`` with the
status it maps to.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import grpc

from augserve.framing import Framed
from augserve.server.batcher import Batcher
from augserve.server.caller import Caller
from augserve.server.errors import Refused, status_of
from augserve.server.requests import Built
from augserve.server.responses import write_answer
from augserve.transport import PROBE_HEADER
from augserve.v1 import augserve_pb2 as pb


def is_probe(caller: Caller) -> bool:
    return any(key == PROBE_HEADER for key, _ in caller.metadata)


class Answers:
    def __init__(self, batcher: Batcher, metrics, max_message_bytes: int):
        self.batcher = batcher
        self.max_message_bytes = max_message_bytes
        self.metrics = metrics
        self.draining = False  # set on SIGTERM: new work is refused with UNAVAILABLE so clients go elsewhere
        self.last_refused = 0.0  # when the last call was refused for draining (time.monotonic)

    async def answer(self, method: str, caller: Caller, build: Callable[[], Built], *, label: str = "?",
                     into: pb.AugmentResponse | None = None,
                     passthrough: tuple[type[Exception], ...] = ()) -> Framed:
        """The answer to the request ``build`` checks (written into ``into`` when given); every failure comes
        out as ``Refused`` with the status the caller gets (except ``passthrough`` types). ``label``: the
        pipeline's name in metrics (``JobBuilder.label``), also for a request refused before it is built.
        A client's probe (``PROBE_HEADER`` on a one-sample Augment) is answered like any call and counted
        apart from the requests."""
        started = time.perf_counter()
        name, status, built = label, "UNKNOWN", None
        probe = method == "Augment" and is_probe(caller)  # until the request shows it is more than a probe
        try:
            if self.draining:
                self.last_refused = time.monotonic()
                raise Refused(grpc.StatusCode.UNAVAILABLE, "server is draining (shutting down); retry on another "
                              "replica")
            built = build()
            name = built.name
            probe = probe and built.job.size == 1
            done = await self.batcher.submit(built.job)
            response = pb.AugmentResponse() if into is None else into
            answer = write_answer(response, built, done)
            if answer.nbytes > self.max_message_bytes:  # only params, known once drawn, can bring it over
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"answer: {answer.nbytes} bytes with its params, "
                              f"more than the {self.max_message_bytes}-byte message limit (--max-message-bytes); "
                              "send fewer samples or leave return_params off")
            response.server_seconds = time.perf_counter() - started
            if not probe:
                self.metrics.samples.labels(name, "OK").inc(built.job.size)
                self.metrics.tenant_samples.labels(self.metrics.tenant_label(built.job.tenant.name)).inc(
                    built.job.size)
            status = "OK"
            return answer
        except asyncio.CancelledError:  # the caller went away or its deadline passed: no answer was sent
            status = "DEADLINE_EXCEEDED" if caller.deadline_passed() else "CANCELLED"
            raise
        except passthrough:
            status = "SKIPPED"
            raise
        except Exception as error:  # noqa: BLE001 - every failure becomes a clear status
            code, message = status_of(error, method)
            status = code.name
            raise Refused(code, message) from None
        finally:
            if probe:
                self.metrics.probes.labels(status).inc()
            else:
                self._count(method, name, status, started, built)

    def _count(self, method: str, name: str, status: str, started: float, built: Built | None) -> None:
        self.metrics.requests.labels(method, name, status).inc()
        self.metrics.latency.labels(method).observe(time.perf_counter() - started)
        if built is not None:
            self.metrics.tenant_requests.labels(self.metrics.tenant_label(built.job.tenant.name), status).inc()

    def drain(self) -> None:
        self.draining, self.last_refused = True, time.monotonic()

    async def quiet(self, seconds: float, limit: float) -> None:
        """Return once no call has been refused for draining for ``seconds`` (``limit`` seconds at most)."""
        end = time.monotonic() + limit
        while (now := time.monotonic()) < end and now - self.last_refused < seconds:
            await asyncio.sleep(seconds / 4)

    def count_refused(self, method: str, code: grpc.StatusCode) -> None:
        """A request refused before it reached the service (undecodable bytes)."""
        self.metrics.requests.labels(method, "?", code.name).inc()
