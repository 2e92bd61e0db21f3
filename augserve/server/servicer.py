"""The Augmentation service: validate everything, admit or refuse, batch, answer.

Every failure maps to a status that names the problem: INVALID_ARGUMENT for bad
fields, RESOURCE_EXHAUSTED for a full queue, DEADLINE_EXCEEDED for work that
expired before the device, INTERNAL (logged, without tensor bytes or tokens)
for anything unexpected. Nothing surfaces as UNKNOWN.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import itertools
import json
import logging
import math
import time
from typing import Any, AsyncIterator, Callable

import grpc
import torch

import augserve
from augserve import wire
from augserve.encoded import FORMATS, DecodeError, EncodedBatch
from augserve.labels import as_soft_labels
from augserve.pipeline import OUT_DTYPES, Pipeline
from augserve.steps.image import Normalize
from augserve.server.batcher import Batcher, DeadlineExpired, Job, QueueFull
from augserve.server.config import ServerConfig
from augserve.random import sample_keys
from augserve.shared_memory import RegionCache
from augserve.server.datasets import Dataset, shard_batches
from augserve.server.file_datasets import FileDataset
from augserve.server.handlers import Refused
from augserve.server.offers import OfferedRegions
from augserve.server.tenants import TenantRefused, Tenants
from augserve.v1 import augserve_pb2 as pb

log = logging.getLogger("augserve.server")
DATASET_AHEAD = 3  # batches StreamDataset keeps in flight (2 clients on a served JPEG folder: 0.81x of in
# process with 2, 0.85x with 3)
READERS = 4  # threads reading dataset files (disk waits, not CPU)


def _invalid(message: str) -> Refused:
    return Refused(grpc.StatusCode.INVALID_ARGUMENT, message)


@functools.lru_cache(maxsize=256)
def _compile(kind: str, text: str, strength: float) -> Pipeline:
    return Pipeline.from_spec(text).at_strength(strength)


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


async def _end_stream(context, refused: Refused, position: int, request_id: int | None) -> None:
    """End a stream with one request's failure, naming it in the message and in trailing metadata."""
    metadata = [("augserve-failed-request", str(position))]
    message = str(refused)  # undecodable bytes (no request_id) are already named by position
    if request_id is not None:
        metadata.append(("augserve-failed-request-id", str(request_id)))
        message = f"request {position} of the stream (request_id {request_id}): {message}"
    context.set_trailing_metadata(tuple(metadata))
    await context.abort(refused.code, message)


def _pass(turn: asyncio.Future) -> None:
    if not turn.done():
        turn.set_result(None)


def _params_json(params: list[dict]) -> str:
    return json.dumps([{k: _jsonable(v) for k, v in step.items()} for step in params])


class AugmentationService:
    def __init__(self, config: ServerConfig, batcher: Batcher, device: torch.device,
                 datasets: dict[str, Callable[[], Dataset]], pipelines: dict[str, tuple[str, object]], metrics,
                 tenants: Tenants | None = None):
        self.config = config
        self.tenants = tenants or Tenants({}, config.max_queue)
        self.pipelines = pipelines
        self.regions = RegionCache(max_read=config.max_message_bytes)  # same-host clients' regions
        self.batcher = batcher
        self.device = device
        self.dataset_loaders = datasets
        self._datasets: dict[str, Dataset] = {}
        self.metrics = metrics
        self._readers = concurrent.futures.ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="augserve-read")
        self._logged_skips: set[tuple[str, int]] = set()
        self.draining = False  # set on SIGTERM: new work is refused with UNAVAILABLE so clients go elsewhere

    def _admit_while_serving(self) -> None:
        if self.draining:
            raise Refused(grpc.StatusCode.UNAVAILABLE, "server is draining (shutting down); retry on another replica")

    # --- request checking ----------------------------------------------------------------

    def _pipeline(self, ref: pb.PipelineRef, field: str) -> tuple[Pipeline, str]:
        """The compiled pipeline a request names (served name, preset, timm string) or spells out."""
        kind = ref.WhichOneof("kind")
        if kind is None:
            raise _invalid(f"{field}: expected a pipeline name or spec, got neither")
        text = getattr(ref, kind)
        if kind == "name" and text in self.pipelines:
            kind, text, label = "spec", json.dumps(self.pipelines[text][1]), text
        else:
            label = text
        try:
            return _compile(kind, text, ref.strength if ref.HasField("strength") else 1.0), label
        except ValueError as error:
            message = str(error)
            raise _invalid(message if message.startswith(f"{field}:") else f"{field}: {message}") from None

    def _check_plane(self, shape: tuple[int, ...], field: str, what: str) -> None:
        plane = shape[-2:] if len(shape) >= 3 else shape[-1:]  # H x W (F x T, C x T), or a waveform's length
        pixels = math.prod(plane)
        if pixels > self.config.max_pixels:
            raise _invalid(f"{field}: expected at most {self.config.max_pixels} values per sample plane "
                           f"(--max-pixels), {what} {'x'.join(map(str, plane))} = {pixels}")

    def _job(self, request: pb.AugmentRequest, context,
             x: torch.Tensor | None = None) -> tuple[Job, str, Normalize | None]:
        """The job, the pipeline's name, and the normalize step left to the caller (``defer_normalize``).

        ``x``: a served dataset's batch, gathered on the server (the request then carries none).
        """
        pipeline, name = self._pipeline(request.pipeline, "pipeline")
        try:
            tenant = self.tenants.of(context.invocation_metadata(), context.peer())
        except TenantRefused as refused:
            raise Refused(refused.code, str(refused)) from None
        deferred = None
        if request.defer_normalize:
            pipeline, deferred = pipeline.deferring_normalize()
        try:
            if x is None:
                x = self._input(request)
            elif isinstance(x, list):  # a served dataset's files, each header already checked
                x = EncodedBatch(x, max_pixels=self.config.max_pixels, field="dataset files")
            output = self.regions.span(request.output_shm, request.output_shm.size, "output_shm") \
                if request.HasField("output_shm") else None
        except ValueError as error:  # WireError, SharedMemoryError, a bad encoded image
            raise _invalid(str(error)) from None
        encoded = isinstance(x, EncodedBatch)
        batch = len(x) if encoded or x.dim() else 0
        field = "encoded.images" if encoded else "x.shape[0]"
        if not 1 <= batch <= self.config.max_samples:
            raise _invalid(f"{field}: expected 1 to {self.config.max_samples} samples, got {batch}")
        if not encoded:  # encoded images had each header checked against the limit already
            self._check_plane(tuple(x.shape), "x.shape", "got")
        keys = torch.tensor(list(request.keys), dtype=torch.int64) if request.keys else torch.arange(batch)
        if keys.shape[0] != batch:
            raise _invalid(f"keys: expected {batch} keys (one per sample) or none, got {keys.shape[0]}")
        if request.out_dtype and request.out_dtype not in OUT_DTYPES:
            raise _invalid(f"out_dtype: expected one of {', '.join(OUT_DTYPES)} or empty, got {request.out_dtype!r}")
        out_dtype = OUT_DTYPES.get(request.out_dtype) if request.out_dtype and deferred is None else None
        labels = None
        if request.HasField("labels"):
            try:
                raw = wire.to_torch(request.labels, "labels", ("int64", "float32"))
                labels = as_soft_labels(raw, batch, request.num_classes or None, torch.device("cpu"))
            except ValueError as error:
                raise _invalid(str(error)) from None
        try:  # the pipeline's own checks (rank, dtype, modality, shapes, a size-fixing first step), before any work
            out_shape, out_type = pipeline.check(x, out_dtype)
        except ValueError as error:
            raise _invalid(str(error)) from None
        self._check_output(out_shape, out_type, output)
        mixes = any(step.mixes_samples for step in pipeline.steps)
        layout = ("encoded",) if encoded else (tuple(x.shape[1:]), x.dtype)
        merge_key = None if mixes else (name, pipeline.strength, deferred is None, *layout, out_dtype,
                                        None if labels is None else labels.shape[1])
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        job = Job(pipeline, merge_key, context, x, labels, keys, request.seed, out_dtype, deadline, output=output,
                  tenant=tenant)
        return job, name, deferred

    def _input(self, request: pb.AugmentRequest) -> torch.Tensor | EncodedBatch:
        """The request's dense ``x`` or its ``encoded`` images (exactly one), every field checked."""
        if request.HasField("x") == request.HasField("encoded"):
            given = "both" if request.HasField("x") else "neither"
            raise _invalid(f"x, encoded: expected exactly one (a dense tensor or encoded images), got {given}")
        if request.HasField("x"):
            return wire.to_torch(request.x, "x", ("uint8", "float16", "float32"), self.regions)
        return EncodedBatch(self._encoded_files(request.encoded), max_pixels=self.config.max_pixels,
                            field="encoded.images")

    def _encoded_files(self, message: pb.EncodedImages) -> list:
        """Each file's bytes: the repeated field, or spans of one shared-memory region (read once, then checked)."""
        if not message.HasField("shm"):
            if message.sizes:
                raise _invalid("encoded.sizes: only with encoded.shm (inline images carry their own lengths)")
            files = list(message.images)
            if len(files) > self.config.max_samples:
                raise _invalid(f"encoded.images: expected 1 to {self.config.max_samples} samples, got {len(files)}")
            return files
        if message.images:
            raise _invalid("encoded: expected images or shm, got both")
        sizes = list(message.sizes)
        if not 1 <= len(sizes) <= self.config.max_samples:
            raise _invalid(f"encoded.sizes: expected 1 to {self.config.max_samples} file lengths, got {len(sizes)}")
        if 0 in sizes:
            raise _invalid(f"encoded.sizes[{sizes.index(0)}]: expected a file length, got 0 bytes")
        files = memoryview(self.regions.buffer(message.shm, sum(sizes), "encoded.shm"))
        ends = itertools.accumulate(sizes)
        return [files[end - size:end] for size, end in zip(sizes, ends)]

    def _check_output(self, shape: tuple[int, ...], dtype: torch.dtype, output) -> None:
        """The answer's size, known from the pipeline before any work, within the same limits as the input's."""
        self._check_plane(shape, "pipeline", f"but it returns {list(shape)}, a plane of")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self.config.max_message_bytes and (output is None or nbytes > output.nbytes):
            raise _invalid(f"pipeline: returns {list(shape)} {wire.dtype_name(dtype)} = {nbytes} bytes, more than the "
                           f"{self.config.max_message_bytes}-byte message limit (--max-message-bytes); "
                           "send fewer samples or a smaller size")

    # --- running -----------------------------------------------------------------------

    async def _answer(self, request: pb.AugmentRequest, context, method: str, x: torch.Tensor | list | None = None,
                      passthrough: tuple[type[Exception], ...] = (),
                      into: pb.AugmentResponse | None = None) -> pb.AugmentResponse:
        """One request's answer (written into ``into`` when given: no copy of a batch-sized message); every
        failure comes out as ``Refused`` with the status the caller gets (except ``passthrough`` types)."""
        started = time.perf_counter()
        name, status, job = "?", "UNKNOWN", None
        try:
            self._admit_while_serving()
            job, name, deferred = self._job(request, context, x)
            out = await self.batcher.submit(job)
            response = pb.AugmentResponse() if into is None else into
            response.request_id, response.label_smoothing = request.request_id, out.label_smoothing
            if deferred is not None:
                response.deferred_normalize.mean[:] = deferred.fill_for(out.x, "mean")
                response.deferred_normalize.std[:] = deferred.fill_for(out.x, "std")
            if job.output_written:  # already in the client's region: only the reference travels
                wire.describe_shared(response.x, out.x, request.output_shm)
            else:
                wire.write(response.x, out.x)
            if out.labels is not None:
                wire.write(response.labels, out.labels)
            if request.return_params:
                response.params_json = _params_json(out.params)
            response.server_seconds = time.perf_counter() - started
            self.metrics.samples.labels(name, "OK").inc(job.size)
            self.metrics.tenant_samples.labels(self.metrics.tenant_label(job.tenant.name)).inc(job.size)
            status = "OK"
            return response
        except asyncio.CancelledError:  # the caller went away or its deadline passed: no answer was sent
            remaining = context.time_remaining()
            status = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
            raise
        except passthrough:
            status = "SKIPPED"
            raise
        except Exception as error:  # noqa: BLE001 - every failure becomes a clear status
            code, message = self._status(error, method)
            status = code.name
            raise Refused(code, message) from None
        finally:
            self.metrics.requests.labels(method, name, status).inc()
            self.metrics.latency.labels(method).observe(time.perf_counter() - started)
            if job is not None:
                self.metrics.tenant_requests.labels(self.metrics.tenant_label(job.tenant.name), status).inc()

    def count_refused(self, method: str, code: grpc.StatusCode) -> None:
        """A request refused before it reached the service (undecodable bytes)."""
        self.metrics.requests.labels(method, "?", code.name).inc()

    @staticmethod
    def _status(error: Exception, method: str) -> tuple[grpc.StatusCode, str]:
        if isinstance(error, Refused):
            return error.code, str(error)
        if isinstance(error, QueueFull):
            return grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
        if isinstance(error, DeadlineExpired):
            return grpc.StatusCode.DEADLINE_EXCEEDED, str(error)
        if isinstance(error, ValueError):
            return grpc.StatusCode.INVALID_ARGUMENT, str(error)
        log.exception("%s failed unexpectedly", method)
        return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); see the server log"

    async def Augment(self, request, context):
        try:
            return await self._answer(request, context, "Augment")
        except Refused as refused:
            await context.abort(refused.code, str(refused))

    async def AugmentStream(self, requests, context) -> AsyncIterator[pb.AugmentResponse]:
        """Requests run concurrently (so they can share device batches); answers keep their order.

        A request that fails (bad fields, undecodable bytes, arriving while the server drains) ends
        the stream with its status, after the answers to every request received before it; the ones
        after it are dropped. The message and trailing metadata name its position and request_id.
        """
        pending: asyncio.Queue = asyncio.Queue()

        async def read():
            position = 0
            try:
                async for request in requests:
                    answer = asyncio.ensure_future(self._answer(request, context, "AugmentStream"))
                    await pending.put((position, request.request_id, answer))
                    position += 1
            except Refused as refused:  # undecodable bytes at this position
                self.count_refused("AugmentStream", refused.code)
                failed = asyncio.get_running_loop().create_future()
                failed.set_exception(refused)
                await pending.put((position, None, failed))
            await pending.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while (item := await pending.get()) is not None:
                position, request_id, answer = item
                try:
                    yield await answer
                except Refused as refused:
                    await _end_stream(context, refused, position, request_id)
        finally:
            reader.cancel()
            while not pending.empty():  # answers to requests after the failing one: never sent
                if (item := pending.get_nowait()) is not None:
                    item[2].cancel()

    async def StreamDataset(self, request, context):
        async for answer in self._stream_dataset(request, context):
            yield answer

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
        try:
            async for answer in self._stream_dataset(first.start, context, offers):
                if offers.refused is not None:
                    await context.abort(offers.refused.code, str(offers.refused))
                yield answer
        finally:
            reader.cancel()

    async def _stream_dataset(self, request: pb.StreamDatasetRequest, context,
                              offers: OfferedRegions | None = None) -> AsyncIterator[pb.DatasetBatch]:
        dataset = await self._dataset(request.dataset, context)
        try:
            self._pipeline(request.pipeline, "pipeline")
        except Refused as error:
            await context.abort(error.code, str(error))
        shards = request.num_shards or 1
        if not 1 <= request.batch_size <= self.config.max_samples:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"batch_size: expected 1 to {self.config.max_samples}, got {request.batch_size}")
        if request.shard_index >= shards:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"shard_index: expected 0 to {shards - 1} (num_shards={shards}), "
                                f"got {request.shard_index}")
        batches = shard_batches(len(dataset), request.batch_size, request.seed, request.epoch,
                                request.shard_index, shards)

        previous: asyncio.Future | None = None  # the turn of the batch before: set once it went to the device

        def augment(position: int) -> asyncio.Future:
            nonlocal previous
            turn = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._dataset_batch(dataset, request, batches[position], context, offers,
                                                             previous, turn))
            previous = turn
            return task

        # DATASET_AHEAD batches in flight: their files are read and the device works on the next while this
        # one is sent, and the next one's arrival sends this one to the device without waiting out max_delay_ms.
        ahead: collections.deque[tuple[int, asyncio.Future]] = collections.deque()
        positions = iter(range(request.start_batch, len(batches)))
        try:
            while True:
                while len(ahead) < DATASET_AHEAD and (position := next(positions, None)) is not None:
                    ahead.append((position, augment(position)))
                if not ahead:
                    return
                position, task = ahead.popleft()
                try:
                    answer = await task
                except Refused as refused:
                    await context.abort(refused.code, f"batch {position}: {refused}")
                answer.batch_index, answer.num_batches = position, len(batches)
                yield answer
        finally:
            for _, task in ahead:
                task.cancel()

    async def _dataset_batch(self, dataset: Dataset | FileDataset, request: pb.StreamDatasetRequest,
                             indices: torch.Tensor, context, offers: OfferedRegions | None,
                             after: asyncio.Future | None, turn: asyncio.Future) -> pb.DatasetBatch:
        """One batch of a served dataset: its files read on the reader threads, the unreadable and the
        undecodable left out (named in ``skipped``), the rest augmented as one request (into an offered
        output region when there is one).

        Reads finish in any order; batches go to the device in stream order (``after`` the one before,
        then ``turn`` passes to the next), else the first answer can wait for a later batch's work.
        """
        samples = await asyncio.get_running_loop().run_in_executor(self._readers, dataset.read, indices,
                                                                   self.config.max_pixels)
        if after is not None:
            await after
        try:
            return await self._augment_dataset_batch(dataset, request, samples, context, offers, turn)
        finally:
            _pass(turn)

    async def _augment_dataset_batch(self, dataset: Dataset | FileDataset, request: pb.StreamDatasetRequest,
                                     samples, context, offers: OfferedRegions | None,
                                     turn: asyncio.Future) -> pb.DatasetBatch:
        kept, x, skipped = samples.indices, samples.x, list(samples.skipped)
        answer, answered = pb.DatasetBatch(), False
        output = offers.take() if offers is not None and len(kept) else None
        while len(kept):
            inner = pb.AugmentRequest(seed=request.seed, out_dtype=request.out_dtype,
                                      defer_normalize=request.defer_normalize,
                                      return_params=request.return_params, num_classes=dataset.num_classes,
                                      keys=sample_keys(kept, request.epoch).tolist())
            inner.pipeline.CopyFrom(request.pipeline)
            if output is not None:
                inner.output_shm.CopyFrom(output)
            wire.write(inner.labels, dataset.labels[kept])
            _pass(turn)  # the next batch goes on once this one is queued (the answer runs up to there at once)
            try:
                await self._answer(inner, context, "StreamDataset", x, passthrough=(DecodeError,), into=answer.batch)
                answered = True
                break
            except DecodeError as error:  # a file whose header was fine but whose body is not: leave it out
                skipped.append((int(kept[error.index]), str(error).split(": ", 1)[-1]))
                keep = torch.arange(len(kept)) != error.index
                kept, x = kept[keep], [file for file, k in zip(x, keep.tolist()) if k]
        for index, reason in skipped:
            self._report_skipped(dataset, index, reason)
        if not answered:
            answer.ClearField("batch")  # every sample was skipped
            if output is not None:
                offers.give_back(output)
        answer.sample_indices[:] = kept.tolist()
        answer.skipped.extend(pb.SkippedSample(index=i, reason=r) for i, r in sorted(skipped))
        return answer

    def _report_skipped(self, dataset, index: int, reason: str) -> None:
        """Count every skip; log each sample once, with where its bytes are."""
        self.metrics.dataset_skipped.labels(dataset.name).inc()
        if (dataset.name, index) not in self._logged_skips:
            self._logged_skips.add((dataset.name, index))
            where = dataset.where(index) if isinstance(dataset, FileDataset) else f"index {index}"
            log.warning("dataset %s: skipped sample %d (%s): %s", dataset.name, index, where, reason)

    async def _dataset(self, name: str, context) -> Dataset | FileDataset:
        if name not in self.dataset_loaders:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"dataset: unknown dataset {name!r} "
                                f"(served: {', '.join(sorted(self.dataset_loaders))})")
        if name not in self._datasets:
            try:
                self._datasets[name] = await asyncio.get_running_loop().run_in_executor(
                    None, self.dataset_loaders[name])
            except ImportError as error:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"dataset {name!r} needs a package this server lacks: {error}")
        return self._datasets[name]

    async def ListPipelines(self, request, context):
        return pb.ListPipelinesResponse(pipelines=[
            pb.PipelineInfo(name=name, description=description, spec_json=json.dumps(steps))
            for name, (description, steps) in self.pipelines.items()])

    async def ListDatasets(self, request, context):
        infos = []
        for name in sorted(self.dataset_loaders):
            info = pb.DatasetInfo(name=name)
            loaded = self._datasets.get(name)
            if loaded is not None:
                info.modality, info.size, info.num_classes = loaded.modality, len(loaded), loaded.num_classes
                if isinstance(loaded, FileDataset):
                    info.dtype, info.shards = "encoded", loaded.shards
                else:
                    info.sample_shape.extend(loaded.x.shape[1:])
                    info.dtype = wire.dtype_name(loaded.x)
            infos.append(info)
        return pb.ListDatasetsResponse(datasets=infos)

    async def ListTenants(self, request, context):
        """Named tenants and those seen since start-up (connections only while they have work)."""
        batcher, tenants = self.batcher, dict(self.tenants.named)
        tenants.update((name, tenant) for name, tenant in batcher.tenants_seen.items()
                       if tenant.source != "connection" or batcher.tenant_in_flight[name])
        return pb.ListTenantsResponse(tenants=[
            pb.TenantInfo(name=t.name, source=t.source, weight=t.weight, max_queue=t.max_queue,
                          max_in_flight=t.max_in_flight, queued_samples=batcher.tenant_queued[t.name],
                          in_flight=batcher.tenant_in_flight[t.name]) for t in sorted(tenants.values(),
                                                                                      key=lambda t: t.name)])

    async def ServerInfo(self, request, context):
        c = self.config
        return pb.ServerInfoResponse(version=augserve.__version__, device=str(self.device),
                                     max_message_bytes=c.max_message_bytes, max_samples_per_request=c.max_samples,
                                     max_pixels=c.max_pixels, max_queue=c.max_queue, max_batch=c.max_batch,
                                     max_delay_ms=c.max_delay_ms, encoded_formats=FORMATS)

