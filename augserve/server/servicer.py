"""The Augmentation service: each gRPC method handed to the room that does its job.

Requests become jobs in ``requests.py``, run through ``answers.py`` (batcher, device, responses),
and every failure maps to a status that names the problem (``errors.py``); served datasets stream
from ``dataset_stream.py``. What is left here is the order of streams and the discovery calls.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import AsyncIterator, Callable

import grpc
import torch

import augserve
from augserve.encoded import FORMATS
from augserve.framing import Framed
from augserve.server.answers import Answers
from augserve.server.batcher import Batcher
from augserve.server.caller import Caller
from augserve.server.config import ServerConfig
from augserve.server.dataset_stream import DatasetStreams
from augserve.server.datasets import Dataset
from augserve.server.errors import Refused
from augserve.server.offers import OfferedRegions
from augserve.server.requests import JobBuilder
from augserve.server.tenants import TenantRefused, Tenants
from augserve.v1 import augserve_pb2 as pb


def _counted(method: str):
    """A streaming method counted in ``augserve_streams_open`` while it runs: a stream whose client vanished
    must end (keepalive cancels it), and the gauge shows that it did."""
    def wrap(stream):
        @functools.wraps(stream)
        async def counted(self, request, context):
            gauge = self.metrics.streams_open.labels(method)
            gauge.inc()
            try:
                async for answer in stream(self, request, context):
                    yield answer
            finally:
                gauge.dec()
        return counted
    return wrap


async def _end_stream(context, refused: Refused, position: int, request_id: int | None) -> None:
    """End a stream with one request's failure, naming it in the message and in trailing metadata."""
    metadata = [("augserve-failed-request", str(position))]
    message = str(refused)  # undecodable bytes (no request_id) are already named by position
    if request_id is not None:
        metadata.append(("augserve-failed-request-id", str(request_id)))
        message = f"request {position} of the stream (request_id {request_id}): {message}"
    context.set_trailing_metadata(tuple(metadata))
    await context.abort(refused.code, message)


class AugmentationService:
    def __init__(self, config: ServerConfig, batcher: Batcher, device: torch.device,
                 datasets: dict[str, Callable[[], Dataset]], pipelines: dict[str, tuple[str, object]], metrics,
                 tenants: Tenants | None = None):
        self.config = config
        self.device = device
        self.batcher = batcher
        self.tenants = tenants or Tenants({}, config.max_queue)
        self.pipelines = pipelines
        self.metrics = metrics
        self.builder = JobBuilder(config, self.tenants, pipelines)
        self.answers = Answers(batcher, metrics, config.max_message_bytes)
        self.datasets = DatasetStreams(datasets, self.builder, self.answers, metrics)
        self.count_refused = self.answers.count_refused

    @property
    def regions(self):
        """Same-host clients' shared-memory regions, open while the server runs."""
        return self.builder.regions

    def drain(self) -> None:
        """Refuse new work from now on (UNAVAILABLE, so clients retry on another replica)."""
        self.answers.drain()

    def _answer(self, request: Framed, caller: Caller, method: str):
        return self.answers.answer(method, caller, lambda: self.builder.from_request(request, caller),
                                   label=self.builder.label(request.message.pipeline))

    async def Augment(self, request, context):
        try:
            return await self._answer(request, Caller.of(context), "Augment")
        except Refused as refused:
            await context.abort(refused.code, str(refused))

    @_counted("AugmentStream")
    async def AugmentStream(self, requests, context) -> AsyncIterator[Framed]:
        """Requests run concurrently (so they can share device batches); answers keep their order.

        A request that fails (bad fields, undecodable bytes, arriving while the server drains) ends
        the stream with its status, after the answers to every request received before it; the ones
        after it are dropped. The message and trailing metadata name its position and request_id.

        Backpressure: the stream stops reading while its tenant's in-flight limit of requests are read and
        not yet answered to the client, so one that writes and never reads holds at most that many.
        """
        caller = Caller.of(context)
        pending: asyncio.Queue = asyncio.Queue()
        unanswered = asyncio.Semaphore(self._in_flight_limit(caller))

        async def read():
            position, stream = 0, aiter(requests)
            try:
                while await unanswered.acquire() and (request := await anext(stream, None)) is not None:
                    answer = asyncio.ensure_future(self._answer(request, caller, "AugmentStream"))
                    await pending.put((position, request.message.request_id, answer))
                    position += 1
            except Refused as refused:  # undecodable bytes at this position
                self.count_refused("AugmentStream", refused.code)
                failed = asyncio.get_running_loop().create_future()
                failed.set_exception(refused)
                await pending.put((position, None, failed))
            await pending.put(None)

        reader = asyncio.ensure_future(read())
        context.add_done_callback(lambda _: reader.cancel())  # the generator's finally may run much later
        try:
            while (item := await pending.get()) is not None:
                position, request_id, answer = item
                try:
                    yield await answer
                except Refused as refused:
                    await _end_stream(context, refused, position, request_id)
                unanswered.release()
        finally:
            reader.cancel()
            while not pending.empty():  # answers to requests after the failing one: never sent
                if (item := pending.get_nowait()) is not None:
                    item[2].cancel()

    def _in_flight_limit(self, caller: Caller) -> int:
        """The stream's tenant's in-flight limit (the default's when its metadata is refused: the first
        request then fails with the reason)."""
        try:
            return self.tenants.of(caller.metadata, caller.peer).max_in_flight
        except TenantRefused:
            return self.tenants.default["max_in_flight"]

    @_counted("StreamDataset")
    async def StreamDataset(self, request, context):
        async for answer in self.datasets.stream(request, context):
            yield answer

    @_counted("StreamDatasetShared")
    async def StreamDatasetShared(self, messages, context):
        """StreamDataset writing each batch into an output region the client offered (see offers.py)."""
        try:
            first = await anext(aiter(messages), None)
        except Refused as refused:
            self.count_refused("StreamDatasetShared", refused.code)
            await context.abort(refused.code, str(refused))
        if first is None or not first.HasField("start"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request 0 of the stream: expected start (the "
                                "StreamDatasetRequest), got " + ("nothing" if first is None else "none"))
        offers = OfferedRegions()
        try:
            offers.add(first, 0)
        except Refused as refused:
            await context.abort(refused.code, str(refused))
        reader = asyncio.ensure_future(offers.read(messages))
        context.add_done_callback(lambda _: reader.cancel())
        try:
            async for answer in self.datasets.stream(first.start, context, offers):
                if offers.refused is not None:
                    await context.abort(offers.refused.code, str(offers.refused))
                yield answer
        finally:
            reader.cancel()

    async def ListPipelines(self, request, context):
        return pb.ListPipelinesResponse(pipelines=[
            pb.PipelineInfo(name=name, description=description, spec_json=json.dumps(steps))
            for name, (description, steps) in self.pipelines.items()])

    async def ListDatasets(self, request, context):
        return pb.ListDatasetsResponse(datasets=self.datasets.infos())

    async def ListTenants(self, request, context):
        """Named tenants, declared ones not yet forgotten, and any other (connections) while it has work."""
        return pb.ListTenantsResponse(tenants=[
            pb.TenantInfo(name=use.tenant.name, source=use.tenant.source, weight=use.tenant.weight,
                          max_queue=use.tenant.max_queue, max_in_flight=use.tenant.max_in_flight,
                          queued_samples=use.queued_samples, in_flight=use.in_flight)
            for use in self.batcher.ledger.in_use(
                [*self.tenants.named.values(), *self.tenants.declared()])])

    async def ServerInfo(self, request, context):
        c = self.config
        return pb.ServerInfoResponse(version=augserve.__version__, device=str(self.device),
                                     max_message_bytes=c.max_message_bytes, max_samples_per_request=c.max_samples,
                                     max_pixels=c.max_pixels, max_queue=c.max_queue, max_batch=c.max_batch,
                                     max_delay_ms=c.max_delay_ms, encoded_formats=FORMATS)
