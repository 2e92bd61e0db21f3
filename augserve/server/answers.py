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
from augserve.server.errors import Refused, status_of
from augserve.server.requests import Built
from augserve.server.responses import write_answer
from augserve.v1 import augserve_pb2 as pb


class Answers:
    def __init__(self, batcher: Batcher, metrics):
        self.batcher = batcher
        self.metrics = metrics
        self.draining = False  # set on SIGTERM: new work is refused with UNAVAILABLE so clients go elsewhere

    async def answer(self, method: str, context, build: Callable[[], Built], *,
                     into: pb.AugmentResponse | None = None,
                     passthrough: tuple[type[Exception], ...] = ()) -> Framed:
        """The answer to the request ``build`` checks (written into ``into`` when given); every failure comes
        out as ``Refused`` with the status the caller gets (except ``passthrough`` types)."""
        started = time.perf_counter()
        name, status, built = "?", "UNKNOWN", None
        try:
            if self.draining:
                raise Refused(grpc.StatusCode.UNAVAILABLE, "server is draining (shutting down); retry on another "
                              "replica")
            built = build()
            name = built.name
            done = await self.batcher.submit(built.job)
            response = pb.AugmentResponse() if into is None else into
            answer = write_answer(response, built, done)
            response.server_seconds = time.perf_counter() - started
            self.metrics.samples.labels(name, "OK").inc(built.job.size)
            self.metrics.tenant_samples.labels(self.metrics.tenant_label(built.job.tenant.name)).inc(built.job.size)
            status = "OK"
            return answer
        except asyncio.CancelledError:  # the caller went away or its deadline passed: no answer was sent
            remaining = context.time_remaining()
            status = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
            raise
        except passthrough:
            status = "SKIPPED"
            raise
        except Exception as error:  # noqa: BLE001 - every failure becomes a clear status
            code, message = status_of(error, method)
            status = code.name
            raise Refused(code, message) from None
        finally:
            self.metrics.requests.labels(method, name, status).inc()
            self.metrics.latency.labels(method).observe(time.perf_counter() - started)
            if built is not None:
                self.metrics.tenant_requests.labels(self.metrics.tenant_label(built.job.tenant.name), status).inc()

    def count_refused(self, method: str, code: grpc.StatusCode) -> None:
        """A request refused before it reached the service (undecodable bytes)."""
        self.metrics.requests.labels(method, "?", code.name).inc()
