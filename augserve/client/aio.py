"""The asyncio twin of ``Client``, on ``grpc.aio``: for async training loops and load generators."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, AsyncIterable, AsyncIterator

import grpc
import torch

from augserve.client import codec
from augserve.client.channel import describe
from augserve.client.codec import Array, Batch, split_item
from augserve.client.errors import ServerError, from_rpc_error
from augserve.client.settings import MiB, ClientSettings
from augserve.v1 import augserve_pb2 as pb
from augserve.v1 import augserve_pb2_grpc as rpc


class AsyncClient:
    """``await client.augment(...)`` and ``async for batch in client.map(...)``; the options of ``Client``
    except shared memory (tensors always travel as gRPC bytes)."""

    def __init__(self, targets, *, timeout: float | None = 60.0, token: str | None = None, tls=None,
                 compression: str | None = None, retries: int = 4, failovers: int = 3,
                 max_message_bytes: int = 256 * MiB):
        self.settings = ClientSettings(targets, timeout, token, tls, compression, retries, failovers,
                                       max_message_bytes, shared_memory=False)
        self._channel: grpc.aio.Channel | None = None

    @property
    def stub(self) -> rpc.AugmentationStub:
        if self._channel is None:  # opened inside the running event loop, as grpc.aio requires
            self._channel = self.settings.open_channel(aio=True)
            self._stub = rpc.AugmentationStub(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _error(self, error: grpc.RpcError):
        return from_rpc_error(error, describe(self.settings.targets))

    async def augment(self, x: Array, labels: Array | None = None, *, pipeline, seed: int = 0, keys=None,
                      num_classes: int | None = None, out_dtype: str | None = None, return_params: bool = False,
                      timeout: float | None = None) -> Batch:
        request = codec.augment_request(x, labels, pipeline=pipeline, seed=seed, keys=keys, num_classes=num_classes,
                                        out_dtype=out_dtype, return_params=return_params)
        try:
            response = await self.stub.Augment(request, timeout=timeout or self.settings.timeout,
                                               **self.settings.call_options())
        except grpc.RpcError as error:
            raise self._error(error) from None
        return codec.batch_from(response, codec.wants_numpy(x))

    async def map(self, batches: AsyncIterable, *, pipeline, seed: int = 0, num_classes: int | None = None,
                  out_dtype: str | None = None, prefetch: int = 4) -> AsyncIterator[Batch]:
        """``Client.map`` for an async iterable: ``prefetch`` batches in flight, results in order.

        Unlike the blocking ``Client.map`` it does not fail over: a dropped stream raises ``Unavailable``.
        """
        if prefetch < 1:
            raise ValueError(f"prefetch: expected at least 1, got {prefetch}")
        call = self.stub.AugmentStream(**self.settings.call_options())
        source = aiter(batches)
        in_flight: deque[bool] = deque()
        position, request_id, exhausted = 0, 0, False
        try:
            while True:
                while not exhausted and len(in_flight) < prefetch:
                    try:
                        x, labels, keys = split_item(await anext(source))
                    except StopAsyncIteration:
                        exhausted = True
                        await call.done_writing()
                        break
                    if keys is None:
                        keys = torch.arange(position, position + len(x))
                    position += len(x)
                    await call.write(codec.augment_request(x, labels, pipeline=pipeline, seed=seed, keys=keys,
                                                           num_classes=num_classes, out_dtype=out_dtype,
                                                           request_id=request_id))
                    request_id += 1
                    in_flight.append(codec.wants_numpy(x))
                if not in_flight:
                    return
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise ServerError(grpc.StatusCode.INTERNAL, "stream ended before every batch was answered",
                                      describe(self.settings.targets))
                yield codec.batch_from(response, in_flight.popleft())
        except grpc.RpcError as error:
            raise self._error(error) from None
        finally:
            call.cancel()

    async def stream_dataset(self, dataset: str, pipeline, batch_size: int, *, epoch: int = 0, seed: int = 0,
                             shard_index: int = 0, num_shards: int = 1, start_batch: int = 0,
                             out_dtype: str | None = None, return_params: bool = False) -> AsyncIterator[Batch]:
        """``Client.stream_dataset``: a dropped stream resumes on another replica at the next undelivered batch."""
        position = start_batch
        for attempt in range(self.settings.failovers + 1):
            request = codec.dataset_request(dataset, pipeline, batch_size, epoch=epoch, seed=seed,
                                            shard_index=shard_index, num_shards=num_shards, start_batch=position,
                                            out_dtype=out_dtype, return_params=return_params)
            call = self.stub.StreamDataset(request, **self.settings.call_options())
            try:
                async for message in call:
                    position = message.batch_index + 1
                    batch = codec.dataset_batch_from(message)
                    if batch is not None:
                        yield batch
                return
            except grpc.RpcError as error:
                await asyncio.sleep(self.settings.failover_delay(error, attempt))
            finally:
                call.cancel()

    async def server_info(self) -> dict[str, Any]:
        try:
            info = await self.stub.ServerInfo(pb.ServerInfoRequest(), timeout=self.settings.timeout,
                                              **self.settings.call_options())
        except grpc.RpcError as error:
            raise self._error(error) from None
        return {field.name: value for field, value in info.ListFields()}
