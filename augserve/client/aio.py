"""The asyncio twin of ``Client``, on ``grpc.aio``: for async training loops and load generators."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterable, AsyncIterator

import grpc

from augserve.framing import Framed
from augserve.client import calls, codec
from augserve.client.batch import Array, Batch
from augserve.client.channel import describe, health_check
from augserve.client.dataset_offers import DatasetOffers
from augserve.client.errors import ServerError
from augserve.client.settings import MiB, ClientSettings
from augserve.client.shm_use import SharedMemoryUse
from augserve.client.stub import Stub
from augserve.shared_memory import Slot, SlotPool
from augserve.v1 import augserve_pb2 as pb


async def _send(call, request) -> None:
    """Write to a stream; one that already ended (the server may end it while an offer is on its way) is
    reported by the next read."""
    try:
        await call.write(request)
    except (grpc.RpcError, asyncio.InvalidStateError):
        if not call.done():
            raise


class _Stalled(Exception):
    """No answer for the client's ``timeout`` while one was awaited: the call was cancelled (see stall.py)."""


async def _read(call, seconds: float | None):
    """The stream's next message, or _Stalled after ``seconds`` without one (a replica alive but stuck)."""
    try:
        return await asyncio.wait_for(call.read(), seconds)
    except asyncio.TimeoutError:
        call.cancel()
        raise _Stalled from None


def _send_failed(error: grpc.RpcError) -> bool:
    """grpc.aio ends a stream whose replica went away mid-write with INTERNAL "Internal error from Core" (set
    by the client's own gRPC core, never by a server), not UNAVAILABLE: it fails over all the same."""
    return error.code() == grpc.StatusCode.INTERNAL and error.details() == "Internal error from Core"


class AsyncClient:
    """``await client.augment(...)``, ``async for batch in client.map(...)`` and ``client.stream_dataset``,
    with the options and behaviour of ``Client``: failover of streams, same-host shared memory (for
    dataset streams too), ``wait_for_ready`` and ``wait_ready``."""

    def __init__(self, targets, *, timeout: float | None = 60.0, token: str | None = None, tls=None,
                 compression: str | None = None, retries: int = 4, failovers: int = 3,
                 max_message_bytes: int = 256 * MiB, shared_memory: bool | None = None, tenant: str | None = None,
                 wait_for_ready: bool | None = None):
        self.settings = ClientSettings(targets, timeout, token, tls, compression, retries, failovers,
                                       max_message_bytes, shared_memory, tenant, wait_for_ready)
        self._channel: grpc.aio.Channel | None = None
        self._readiness = calls.Readiness(wait_for_ready)
        self._shm = SharedMemoryUse(self, self.settings.shared_memory)
        self._probing: asyncio.Lock | None = None
        self._shared_datasets = True  # until a server says it has no StreamDatasetShared
        self._dataset_batch_bytes: dict[tuple, int] = {}  # per dataset stream: the room a full batch takes

    @property
    def stub(self) -> Stub:
        if self._channel is None:  # opened inside the running event loop, as grpc.aio requires
            self._channel = self.settings.open_channel(aio=True)
            self._stub = Stub(self._channel)
            self._health = health_check(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        self._shm.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def wait_ready(self, timeout: float | None = 60.0) -> dict[str, Any]:
        """``Client.wait_ready``: once a server (any target) reports SERVING, its ``server_info()``; ``Unavailable``
        naming the targets after ``timeout`` seconds (None: no bound)."""
        await self._wait_serving(timeout)
        return await self.server_info()

    async def _ready(self, timeout: float | None, stream: bool = False) -> None:
        """Wait for a SERVING server first when this call should (``calls.Readiness``), within ``timeout``."""
        if self._readiness.first(stream):
            await self._wait_serving(timeout)

    async def _wait_serving(self, timeout: float | None) -> None:
        self.stub  # opens the channel
        until, last = calls.deadline(timeout), None
        while True:
            try:  # wait_for_ready: sent once the channel's round robin has a replica its health check calls SERVING
                reply, failed = await self._health(calls.HEALTH, timeout=calls.left(until), wait_for_ready=True,
                                                   metadata=self.settings.metadata), None
            except grpc.RpcError as error:
                reply, failed = None, error
            ready, why = calls.health_answer(reply, failed)
            if ready:
                self._readiness.reached = True
                return
            last = why or last
            if calls.left(until) == 0:
                raise calls.not_ready(self.settings, timeout, last or await self._why_not()) from None
            await asyncio.sleep(min(calls.POLL_S, calls.left(until) or calls.POLL_S))

    async def _why_not(self) -> str | None:
        """The channel's reason for having no server (e.g. connection refused), from one fail-fast check."""
        try:
            await self._health(calls.HEALTH, timeout=calls.DIAGNOSE_S, metadata=self.settings.metadata)
        except grpc.RpcError as error:
            return calls.health_answer(rpc_error=error)[1]
        return None

    async def _unary(self, method: str, request, timeout: float | None = None):
        timeout = timeout or self.settings.timeout
        await self._ready(timeout)
        try:
            return await getattr(self.stub, method)(request, timeout=timeout, **self.settings.call_options())
        except grpc.RpcError as error:
            raise calls.error(self.settings, error) from None

    async def _slot_pool(self) -> SlotPool | None:
        """``Client._slot_pool``: the slots, once a probe that reached a server says the regions work."""
        if self._shm.works is None:
            self._probing = self._probing or asyncio.Lock()  # made in the running loop
            async with self._probing:  # concurrent first calls: one probes, the others wait for its verdict
                if self._shm.works is None:
                    request, slot = self._shm.probe_request()
                    try:
                        response = await self.stub.Augment(request, timeout=self.settings.probe_timeout,
                                                           **self.settings.call_options(probe=True))
                        self._shm.settle(slot, response)
                    except grpc.RpcError as error:
                        self._shm.settle(slot, error=error)
        return self._shm.usable()

    async def _slot(self) -> Slot | None:
        pool = await self._slot_pool()
        return None if pool is None else pool.acquire()

    def _release(self, slot: Slot | None) -> None:
        if slot is not None and self._shm.pool is not None:
            self._shm.pool.release(slot)

    async def augment(self, x: Array | list | None = None, labels: Array | None = None, *, pipeline, seed: int = 0,
                      keys=None, num_classes: int | None = None, out_dtype: str | None = None,
                      return_params: bool = False, defer_normalize: bool = False, strength: float | None = None,
                      timeout: float | None = None, lengths=None, texts: list[str] | None = None) -> Batch:
        x = codec.samples(x, texts)
        await self._ready(timeout or self.settings.timeout)  # before the shared-memory probe, which needs a server too
        slot = await self._slot()
        try:
            request = codec.augment_request(x, labels, pipeline=pipeline, seed=seed, keys=keys,
                                            num_classes=num_classes, out_dtype=out_dtype, return_params=return_params,
                                            defer_normalize=defer_normalize, slot=slot, strength=strength,
                                            lengths=lengths)
            response = await self._unary("Augment", request, timeout)
            return codec.batch_from(response, codec.wants_torch(x), slot, out_dtype)
        finally:
            self._release(slot)

    async def map(self, batches: AsyncIterable, *, pipeline, seed: int = 0, num_classes: int | None = None,
                  out_dtype: str | None = None, prefetch: int = 4, return_params: bool = False,
                  defer_normalize: bool = False, strength: float | None = None) -> AsyncIterator[Batch]:
        """``Client.map`` for an async iterable: ``prefetch`` batches in flight, results in order; if the
        replica goes away, the unanswered batches are sent again to another one."""
        requests = codec.MapRequests(pipeline=pipeline, seed=seed, num_classes=num_classes, out_dtype=out_dtype,
                                     return_params=return_params, defer_normalize=defer_normalize, prefetch=prefetch,
                                     strength=strength)
        source = aiter(batches)
        in_flight = calls.InFlight(self._release)
        exhausted = False
        try:
            for attempt in range(self.settings.failovers + 1):
                await self._ready(self.settings.timeout, stream=True)
                call = self.stub.AugmentStream(**self.settings.call_options())
                try:
                    for request in in_flight.requests():
                        await _send(call, request)
                    while True:
                        while not exhausted and len(in_flight) < prefetch:
                            try:
                                item = await anext(source)
                            except StopAsyncIteration:
                                exhausted = True
                                break
                            await _send(call, in_flight.add(requests.make(item, await self._slot())))
                        if exhausted and not len(in_flight):
                            return
                        response = await _read(call, self.settings.timeout)
                        if response is grpc.aio.EOF:
                            raise ServerError(grpc.StatusCode.INTERNAL, "stream ended before every batch was "
                                              "answered", describe(self.settings.targets))
                        yield in_flight.answered(response, self.settings.targets)
                except (grpc.RpcError, _Stalled) as error:
                    stalled = isinstance(error, _Stalled)
                    await asyncio.sleep(self.settings.failover_delay(
                        None if stalled else error, attempt, lost=not stalled and _send_failed(error), stalled=stalled))
                finally:
                    call.cancel()
        finally:
            in_flight.release_all()

    async def stream_dataset(self, dataset: str, pipeline, batch_size: int, *, epoch: int = 0, seed: int = 0,
                             shard_index: int = 0, num_shards: int = 1, start_batch: int = 0,
                             out_dtype: str | None = None, return_params: bool = False,
                             defer_normalize: bool = False, strength: float | None = None,
                             even_shards: bool | None = None) -> AsyncIterator[Batch]:
        """``Client.stream_dataset`` (even shards by default when ``num_shards > 1``): a dropped stream resumes on
        another replica at the next undelivered batch."""
        resume = calls.DatasetResume(dataset, pipeline, batch_size, epoch=epoch, seed=seed, shard_index=shard_index,
                                     num_shards=num_shards, start_batch=start_batch, out_dtype=out_dtype,
                                     return_params=return_params, defer_normalize=defer_normalize, strength=strength,
                                     even_shards=even_shards)
        while True:
            await self._ready(self.settings.timeout, stream=True)
            request = resume.request()
            pool = await self._slot_pool() if self._shared_datasets else None
            try:
                async for message, slot in (self._dataset_shared(request, pool) if pool
                                            else self._dataset_inline(request)):
                    batch = resume.delivered(message, slot)  # lends the slot's region to it
                    self._release(slot)
                    if batch is not None:
                        yield batch
                return
            except (grpc.RpcError, _Stalled) as error:
                stalled = isinstance(error, _Stalled)
                delay = resume.after(None if stalled else error, self.settings, shared=pool is not None,
                                     lost=not stalled and _send_failed(error), stalled=stalled)
                if delay is None:
                    self._shared_datasets = False  # a server without StreamDatasetShared: bytes from now on
                else:
                    await asyncio.sleep(delay)

    async def _dataset_inline(self, request: pb.StreamDatasetRequest) -> AsyncIterator[tuple[Framed, None]]:
        call = self.stub.StreamDataset(request, **self.settings.call_options())
        try:
            while (message := await _read(call, self.settings.timeout)) is not grpc.aio.EOF:
                yield message, None
        finally:
            call.cancel()

    async def _dataset_shared(self, request: pb.StreamDatasetRequest,
                              pool: SlotPool) -> AsyncIterator[tuple[Framed, Slot | None]]:
        """``Client._dataset_shared``: each message with the slot the server wrote its batch into."""
        offers = DatasetOffers(pool, request, self._dataset_batch_bytes)
        call = self.stub.StreamDatasetShared(**self.settings.call_options())
        finished = False
        try:
            await _send(call, offers.first())
            while (message := await _read(call, self.settings.timeout)) is not grpc.aio.EOF:
                yield message, offers.slot_for(message)
                if (more := offers.more()) is not None:
                    await _send(call, more)
            finished = True
        finally:
            call.cancel()
            offers.close(finished)

    async def server_info(self) -> dict[str, Any]:
        return calls.as_dict(await self._unary("ServerInfo", pb.ServerInfoRequest()))

    async def pipelines(self) -> dict[str, str]:
        """Served pipeline name -> description."""
        return calls.pipelines_of(await self._unary("ListPipelines", pb.ListPipelinesRequest()))

    async def datasets(self) -> list[dict[str, Any]]:
        return calls.datasets_of(await self._unary("ListDatasets", pb.ListDatasetsRequest()))
