"""The blocking client: ``augment`` one batch, ``map`` many on one stream, ``stream_dataset`` an epoch."""

from __future__ import annotations

import os
import queue
import time
from typing import Any, Iterable, Iterator

import grpc

from augserve.framing import Framed
from augserve.client import calls, codec
from augserve.client.batch import Array, Batch
from augserve.client.channel import TLS, health_check
from augserve.client.dataset_offers import DatasetOffers
from augserve.client.settings import MiB, ClientSettings
from augserve.client.shm_use import SharedMemoryUse
from augserve.client.stub import Stub
from augserve.client.stall import StallWatch
from augserve.shared_memory import Slot, SlotPool
from augserve.v1 import augserve_pb2 as pb


class Client:
    """Augment batches on an augserve server (or several replicas, round-robin).

    NumPy arrays (and lists of encoded image files) in give numpy arrays out (read-only views of
    the received bytes); torch tensors in give torch tensors out (writable). When every target is
    on this host, arrays travel through shared memory instead of gRPC bytes (``shared_memory=False``
    turns that off), and results view the client's own output region until dropped. Every failure
    is a ``ServerError``. ``tenant`` (default ``$AUGSERVE_TENANT``) is the name its calls declare for
    fair sharing of the server (a token bound to a tenant in the server's config takes precedence).

    ``wait_for_ready`` (gRPC's): None, the default, makes calls wait for a server that reports SERVING until one
    was reached (a client started before its server waits for it, within each call's timeout), then fail fast;
    True makes every call wait; False none (a client started before its server fails with ``Unavailable``).
    """

    def __init__(self, targets, *, timeout: float | None = 60.0, token: str | None = None,
                 tls: TLS | bool | None = None, compression: str | None = None, retries: int = 4,
                 failovers: int = 3, max_message_bytes: int = 256 * MiB, shared_memory: bool | None = None,
                 tenant: str | None = None, wait_for_ready: bool | None = None):
        self.settings = ClientSettings(targets, timeout, token, tls, compression, retries, failovers,
                                       max_message_bytes, shared_memory, tenant, wait_for_ready)
        self._channel: grpc.Channel | None = None
        self._pid = 0
        self._readiness = calls.Readiness(wait_for_ready)
        self._shm = SharedMemoryUse(self, self.settings.shared_memory)
        self._shared_datasets = True  # until a server says it has no StreamDatasetShared
        self._dataset_batch_bytes: dict[tuple, int] = {}  # per dataset stream: the room a full batch takes

    def __repr__(self) -> str:
        return f"Client({self.settings.targets!r})"

    # A client crosses into DataLoader workers (fork or spawn) as its settings; each process opens its own channel.
    def __getstate__(self) -> dict:
        return {"settings": self.settings}

    def __setstate__(self, state: dict) -> None:
        self.settings, self._channel, self._pid = state["settings"], None, 0
        self._readiness = calls.Readiness(self.settings.wait_for_ready)
        self._shm = SharedMemoryUse(self, self.settings.shared_memory)
        self._shared_datasets, self._dataset_batch_bytes = True, {}

    @property
    def stub(self) -> Stub:
        if self._channel is None or self._pid != os.getpid():
            self._channel = self.settings.open_channel()
            self._pid = os.getpid()
            self._stub = Stub(self._channel)
            self._health = health_check(self._channel)
            self._shm = SharedMemoryUse(self, self.settings.shared_memory)  # a forked child makes its own regions
        return self._stub

    def close(self) -> None:
        if self._channel is not None and self._pid == os.getpid():
            self._channel.close()
            self._shm.close()
        self._channel = None

    # --- same-host shared memory ---------------------------------------------------------------

    def _slot_pool(self) -> SlotPool | None:
        """This process's shared-memory slots, or None when arrays go as gRPC bytes (for now, until a
        probe reaches a server, or for good)."""
        stub = self.stub
        if self._shm.works is None:
            with self._shm.probing:
                if self._shm.works is None:
                    request, slot = self._shm.probe_request()
                    try:
                        response = stub.Augment(request, timeout=self.settings.probe_timeout,
                                                **self.settings.call_options(probe=True))
                        self._shm.settle(slot, response)
                    except grpc.RpcError as error:
                        self._shm.settle(slot, error=error)
        return self._shm.usable()

    def _slot(self) -> Slot | None:
        """A shared-memory slot for one request in flight, or None when arrays go as gRPC bytes."""
        pool = self._slot_pool()
        return None if pool is None else pool.acquire()

    def _release(self, slot: Slot | None) -> None:
        if slot is not None and self._shm.pool is not None:
            self._shm.pool.release(slot)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- readiness ----------------------------------------------------------------------------

    def wait_ready(self, timeout: float | None = 60.0) -> dict[str, Any]:
        """Block until a server (any of the targets) reports SERVING on the gRPC health service, for a job
        that starts beside its server; its ``server_info()``. Raises ``Unavailable`` naming the targets after
        ``timeout`` seconds (None: no bound)."""
        self._wait_serving(timeout)
        return self.server_info()

    def _ready(self, timeout: float | None, stream: bool = False) -> None:
        """Wait for a SERVING server first when this call should (``calls.Readiness``), within ``timeout``."""
        if self._readiness.first(stream):
            self._wait_serving(timeout)

    def _wait_serving(self, timeout: float | None) -> None:
        self.stub  # opens the channel
        until, last = calls.deadline(timeout), None
        while True:
            try:  # wait_for_ready: sent once the channel's round robin has a replica its health check calls SERVING
                reply, failed = self._health(calls.HEALTH, timeout=calls.left(until), wait_for_ready=True,
                                             metadata=self.settings.metadata), None
            except grpc.RpcError as error:
                reply, failed = None, error
            ready, why = calls.health_answer(reply, failed)
            if ready:
                self._readiness.reached = True
                return
            last = why or last
            if calls.left(until) == 0:
                raise calls.not_ready(self.settings, timeout, last or self._why_not()) from None
            time.sleep(min(calls.POLL_S, calls.left(until) or calls.POLL_S))

    def _why_not(self) -> str | None:
        """The channel's reason for having no server (e.g. connection refused), from one fail-fast check."""
        try:
            self._health(calls.HEALTH, timeout=calls.DIAGNOSE_S, metadata=self.settings.metadata)
        except grpc.RpcError as error:
            return calls.health_answer(rpc_error=error)[1]
        return None

    def _unary(self, method: str, request, timeout: float | None = None):
        timeout = timeout or self.settings.timeout
        self._ready(timeout)
        try:
            return getattr(self.stub, method)(request, timeout=timeout, **self.settings.call_options())
        except grpc.RpcError as error:
            raise calls.error(self.settings, error) from None

    # --- augmentation ----------------------------------------------------------------------

    def augment(self, x: Array | list | None = None, labels: Array | None = None, *, pipeline, seed: int = 0,
                keys=None, num_classes: int | None = None, out_dtype: str | None = None, return_params: bool = False,
                defer_normalize: bool = False, strength: float | None = None,
                timeout: float | None = None, lengths=None, texts: list[str] | None = None) -> Batch:
        """One batch in, one augmented batch out. Keys default to 0..B-1 (pass keys for distinct batches).

        ``x`` is a dense batch (numpy or torch) or a list of encoded image files (``bytes``,
        ``memoryview`` or 1-D uint8 arrays: JPEG, PNG, WebP of any sizes) that the server decodes.
        ``defer_normalize``: a pipeline's final normalize is left to the caller (``Batch.normalize``,
        applied by ``Batch.normalized()`` or ``Batch.to(device)``): uint8 travels instead of float.
        ``lengths``: each waveform's valid length in samples (the rest of its row is padding); the batch's
        ``lengths`` are those after the pipeline.
        ``texts`` (or ``x`` as a list of str): sentences for a text pipeline; the batch's ``x`` is the augmented
        sentences (a list of str) and its ``lengths`` their words.
        """
        x = codec.samples(x, texts)
        self._ready(timeout or self.settings.timeout)  # before the shared-memory probe, which needs a server too
        slot = self._slot()
        try:
            request = codec.augment_request(x, labels, pipeline=pipeline, seed=seed, keys=keys,
                                            num_classes=num_classes, out_dtype=out_dtype, return_params=return_params,
                                            defer_normalize=defer_normalize, slot=slot, strength=strength,
                                            lengths=lengths)
            return codec.batch_from(self._unary("Augment", request, timeout), codec.wants_torch(x), slot, out_dtype)
        finally:
            self._release(slot)

    def map(self, batches: Iterable, *, pipeline, seed: int = 0, num_classes: int | None = None,
            out_dtype: str | None = None, prefetch: int = 4, return_params: bool = False,
            defer_normalize: bool = False, strength: float | None = None) -> Iterator[Batch]:
        """Augment an iterable of ``x`` / ``(x, labels)`` / ``(x, labels, keys)`` / ``(x, labels, keys, lengths)``
        with ``prefetch`` in flight.

        Results come in input order on one bidirectional stream. Without keys, a batch's keys are
        the running sample positions, so every sample of the sequence draws its own parameters.
        If the replica goes away, the unanswered batches are sent again to another one; they
        replay bit-identically because parameters depend only on (seed, key).
        """
        requests = codec.MapRequests(pipeline=pipeline, seed=seed, num_classes=num_classes, out_dtype=out_dtype,
                                     return_params=return_params, defer_normalize=defer_normalize, prefetch=prefetch,
                                     strength=strength)
        yield from self._stream((requests.make(item, self._slot()) for item in batches), prefetch)

    def _stream(self, source: Iterator[codec.Sent], prefetch: int) -> Iterator[Batch]:
        in_flight, watch = calls.InFlight(self._release), StallWatch(self.settings.timeout)
        try:
            yield from self._stream_with_failover(source, prefetch, in_flight, watch)
        finally:
            in_flight.release_all()
            watch.close()

    def _stream_with_failover(self, source, prefetch: int, in_flight: calls.InFlight,
                              watch: StallWatch) -> Iterator[Batch]:
        exhausted = False
        for attempt in range(self.settings.failovers + 1):
            outbox: queue.Queue = queue.Queue()

            def send_more() -> None:
                nonlocal exhausted
                while not exhausted and len(in_flight) < prefetch:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                    else:
                        outbox.put(in_flight.add(item))
                if exhausted and not len(in_flight):
                    outbox.put(None)  # half-close: the server ends the stream

            self._ready(self.settings.timeout, stream=True)
            for request in in_flight.requests():
                outbox.put(request)
            send_more()
            call = self.stub.AugmentStream(iter(outbox.get, None), **self.settings.call_options())
            watch.watch(call.cancel)
            try:
                for response in call:
                    watch.answered()
                    batch = in_flight.answered(response, self.settings.targets)
                    send_more()
                    yield batch
                    if len(in_flight):
                        watch.waiting()
                return
            except grpc.RpcError as error:
                time.sleep(self.settings.failover_delay(error, attempt, stalled=watch.stalled))
            finally:
                outbox.put(None)
                call.cancel()

    # --- served datasets --------------------------------------------------------------------

    def stream_dataset(self, dataset: str, pipeline, batch_size: int, *, epoch: int = 0, seed: int = 0,
                       shard_index: int = 0, num_shards: int = 1, start_batch: int = 0,
                       out_dtype: str | None = None, return_params: bool = False,
                       defer_normalize: bool = False, strength: float | None = None,
                       even_shards: bool | None = None) -> Iterator[Batch]:
        """One epoch (of one shard) of a dataset the server reads, augmented, in a deterministic order;
        numpy batches (``Batch.to(device)`` for torch). A dropped stream resumes on another replica
        from the next undelivered batch. Shard k of ``num_shards`` takes the samples at positions k, k +
        num_shards, ... of the epoch's order, as torch's DistributedSampler. ``even_shards`` (default: when
        ``num_shards > 1``, so data-parallel ranks end each epoch together) gives every shard as many samples
        and batches, the epoch padded with fewer than ``num_shards`` of its first samples, each flagged in
        ``Batch.padding``; False: the epoch exactly once, shards differing by up to one batch.
        """
        resume = calls.DatasetResume(dataset, pipeline, batch_size, epoch=epoch, seed=seed, shard_index=shard_index,
                                     num_shards=num_shards, start_batch=start_batch, out_dtype=out_dtype,
                                     return_params=return_params, defer_normalize=defer_normalize, strength=strength,
                                     even_shards=even_shards)
        watch = StallWatch(self.settings.timeout)
        try:
            while True:
                self._ready(self.settings.timeout, stream=True)
                request = resume.request()
                pool = self._slot_pool() if self._shared_datasets else None
                try:
                    for message, slot in (self._dataset_shared(request, pool, watch) if pool
                                          else self._dataset_inline(request, watch)):
                        watch.answered()
                        batch = resume.delivered(message, slot)  # lends the slot's region to it
                        self._release(slot)
                        if batch is not None:
                            yield batch
                        watch.waiting()
                    return
                except grpc.RpcError as error:
                    delay = resume.after(error, self.settings, shared=pool is not None, stalled=watch.stalled)
                    if delay is None:
                        self._shared_datasets = False  # a server without StreamDatasetShared: bytes from now on
                    else:
                        time.sleep(delay)
        finally:
            watch.close()

    def _dataset_inline(self, request: pb.StreamDatasetRequest,
                        watch: StallWatch) -> Iterator[tuple[Framed, None]]:
        call = self.stub.StreamDataset(request, **self.settings.call_options())
        watch.watch(call.cancel)
        try:
            for message in call:
                yield message, None
        finally:
            call.cancel()

    def _dataset_shared(self, request: pb.StreamDatasetRequest, pool: SlotPool,
                        watch: StallWatch) -> Iterator[tuple[Framed, Slot | None]]:
        """The stream's messages, each with the slot the server wrote its batch into (None: inline)."""
        offers = DatasetOffers(pool, request, self._dataset_batch_bytes)
        outbox: queue.Queue = queue.Queue()
        outbox.put(offers.first())
        call = self.stub.StreamDatasetShared(iter(outbox.get, None), **self.settings.call_options())
        watch.watch(call.cancel)
        finished = False
        try:
            for message in call:
                yield message, offers.slot_for(message)
                if (more := offers.more()) is not None:
                    outbox.put(more)
            finished = True
        finally:
            outbox.put(None)
            call.cancel()
            offers.close(finished)

    # --- discovery ---------------------------------------------------------------------------

    def server_info(self) -> dict[str, Any]:
        return calls.as_dict(self._unary("ServerInfo", pb.ServerInfoRequest()))

    def pipelines(self) -> dict[str, str]:
        """Served pipeline name -> description."""
        return calls.pipelines_of(self._unary("ListPipelines", pb.ListPipelinesRequest()))

    def datasets(self) -> list[dict[str, Any]]:
        return calls.datasets_of(self._unary("ListDatasets", pb.ListDatasetsRequest()))
