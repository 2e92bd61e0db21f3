"""Served datasets streamed as augmented batches: one epoch's shard, in order, a few batches ahead.

Each batch's files are read on reader threads, the unreadable and the undecodable left out (named
in the answer's ``skipped``), and the rest augmented as one request built straight from the tensors
read here. Reads finish in any order; batches reach the device in stream order. Streams of the same
epoch share its batches (``shared_epochs``); streams of the same files with other pipelines or seeds
share their decoded pixels (``encoded/window``). A SMOTE-balanced table's synthetic rows (indices >= its
N rows) are made as their batch is read, from the stream's seed and epoch (``table_datasets``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
from typing import AsyncIterator, Callable

import grpc
import torch

from augserve import framing, wire
from augserve.encoded import DecodeError, EncodedBatch
from augserve.encoded.window import DecodedWindow
from augserve.random import sample_keys
from augserve.server.answers import Answers
from augserve.server.audio_datasets import AudioFolder
from augserve.server.caller import Caller
from augserve.server.datasets import Served, ShardBatch, shard_batches
from augserve.server.errors import Refused, invalid
from augserve.server.file_datasets import FileDataset
from augserve.server.offers import OfferedRegions
from augserve.server.requests import Asked, JobBuilder
from augserve.server.shared_epochs import SharedEpochs, identity
from augserve.server.table_datasets import TableDataset, TableSource
from augserve.server.text_datasets import TextDataset
from augserve.server.texts import modality_refused
from augserve.spec import shown
from augserve.text.batch import SentenceError
from augserve.v1 import augserve_pb2 as pb

log = logging.getLogger("augserve.server")
DATASET_AHEAD = 3  # batches StreamDataset keeps in flight (2 clients on a served JPEG folder: 0.81x of in
# process with 2, 0.85x with 3)
MAX_SHARDS = 1 << 16  # data-parallel ranks times loader workers; far more than any job has
READERS = 4  # threads reading dataset files (disk waits, not CPU)


def _pass(turn: asyncio.Future) -> None:
    if not turn.done():
        turn.set_result(None)


class DatasetStreams:
    def __init__(self, loaders: dict[str, Callable[[], Served]], builder: JobBuilder,
                 answers: Answers, metrics):
        self.loaders = loaders
        self.loaded: dict[str, Served] = {}
        self.builder = builder
        self.answers = answers
        self.metrics = metrics
        self.shared = SharedEpochs(builder.config.shared_epoch_bytes, metrics)
        window = builder.config.decoded_window_bytes
        self.decoded = DecodedWindow(window, lambda outcome: metrics.decoded_images.labels(outcome).inc(),
                                     metrics.decoded_window_bytes.set) if window > 0 else None
        self._readers = concurrent.futures.ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="augserve-read")
        self._logged_skips: set[tuple[str, int]] = set()

    async def stream(self, request: pb.StreamDatasetRequest, context,
                     offers: OfferedRegions | None = None) -> AsyncIterator[framing.Framed]:
        caller = Caller.of(context)  # the batch tasks below may outlive the call: they never read its context
        dataset = await self._dataset(request.dataset, context)
        try:
            pipeline, _ = self.builder.pipeline(request.pipeline, "pipeline")
            refused = modality_refused(pipeline, "dataset", isinstance(dataset, TextDataset))
            if refused is not None:
                raise refused
            batches = self._shard(request, len(dataset))
        except Refused as refused:
            await context.abort(refused.code, str(refused))
        previous: asyncio.Future | None = None  # the turn of the batch before: set once it went to the device
        same = identity(request) if offers is None else None  # answers in a client's own regions are its own

        def compute(position: int) -> asyncio.Future:
            nonlocal previous
            turn = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._batch(dataset, request, batches, position, caller, offers,
                                                     previous, turn))
            task.add_done_callback(lambda _: _pass(turn))  # also when cancelled before it ever ran
            previous = turn
            return task

        def augment(position: int) -> asyncio.Future:
            if same is None:
                return compute(position)
            return self.shared.batch((same, position), lambda: compute(position))

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
                yield answer
        finally:
            for position, task in ahead:  # shared batches go on while another stream waits for them
                if same is None:
                    task.cancel()
                else:
                    self.shared.release((same, position), task)

    def _shard(self, request: pb.StreamDatasetRequest, size: int) -> list[ShardBatch]:
        shards, limit = request.num_shards or 1, self.builder.config.max_samples
        if not 1 <= request.batch_size <= limit:
            raise invalid(f"batch_size: expected 1 to {limit}, got {request.batch_size}")
        if shards > MAX_SHARDS:
            raise invalid(f"num_shards: expected 1 to {MAX_SHARDS}, got {shards}")
        if request.shard_index >= shards:
            raise invalid(f"shard_index: expected 0 to {shards - 1} (num_shards={shards}), got {request.shard_index}")
        return shard_batches(size, request.batch_size, request.seed, request.epoch, request.shard_index, shards,
                             request.even_shards)

    async def _batch(self, dataset: Served, request: pb.StreamDatasetRequest,
                     batches: list[ShardBatch], position: int, caller: Caller, offers: OfferedRegions | None,
                     after: asyncio.Future | None, turn: asyncio.Future) -> framing.Framed:
        """Batch ``position``, sent to the device ``after`` the one before; then ``turn`` passes to the next
        (else the first answer can wait for a later batch's work). An abandoned batch passes it as its task ends."""
        batch = batches[position]
        read = functools.partial(dataset.read, seed=request.seed, epoch=request.epoch) \
            if isinstance(dataset, TableDataset) else dataset.read  # synthetic rows are the stream's own
        samples = await asyncio.get_running_loop().run_in_executor(self._readers, read, batch.indices,
                                                                   self.builder.config.max_pixels)
        if after is not None:
            await after
        answer = await self._augment(dataset, request, samples, caller, offers, turn)
        answer.message.batch_index, answer.message.num_batches = position, len(batches)
        if batch.padding.any():  # flagged by index: a shard never holds one twice, and skipped samples are gone
            padded = set(batch.indices[batch.padding].tolist())
            answer.message.padding[:] = [index in padded for index in answer.message.sample_indices]
        return answer

    async def _augment(self, dataset: Served, request: pb.StreamDatasetRequest, samples, caller: Caller,
                       offers: OfferedRegions | None, turn: asyncio.Future) -> framing.Framed:
        kept, x, lengths, skipped = samples.indices, samples.x, samples.lengths, list(samples.skipped)
        kept_labels = samples.labels  # read with the rows: a balanced table's synthetic rows have labels too
        answer, payloads, answered = pb.DatasetBatch(), {}, False
        sentences = isinstance(dataset, TextDataset)  # answered in the message's texts, never in a region
        output = offers.take() if offers is not None and len(kept) and not sentences else None
        max_pixels = self.builder.config.max_pixels
        while len(kept):
            asked = Asked(request.pipeline, request.seed, sample_keys(kept, request.epoch), request.out_dtype,
                          request.defer_normalize, request.return_params, dataset.num_classes, output,
                          lengths=lengths)
            labels = kept_labels
            inputs = x if isinstance(x, torch.Tensor) or sentences else EncodedBatch(
                x, max_pixels=max_pixels, field="dataset files", window=self.decoded,
                keys=[(dataset.name, index) for index in kept.tolist()])
            _pass(turn)  # the next batch goes on once this one is queued (the answer runs up to there at once)
            try:
                augmented = await self.answers.answer("StreamDataset", caller, lambda: self.builder.build(
                    asked, caller, lambda: inputs, lambda: labels), label=self.builder.label(request.pipeline),
                    into=answer.batch, passthrough=(DecodeError, SentenceError))
                payloads, answered = augmented.payloads_at(framing.BATCH), True
                break
            except (DecodeError, SentenceError) as error:
                # a file whose header was fine but whose body is not, or a sentence the pipeline cannot take (no
                # words, or more than its max_words): leave it out
                problems = error.problems if isinstance(error, SentenceError) else \
                    [(error.index, str(error).split(": ", 1)[-1])]  # every bad sentence at once; files one by one
                skipped += [(int(kept[index]), reason) for index, reason in problems]
                keep = ~torch.isin(torch.arange(len(kept)), torch.tensor([index for index, _ in problems]))
                kept, x = kept[keep], [file for file, k in zip(x, keep.tolist()) if k]
                kept_labels = kept_labels[keep]
                lengths = None if lengths is None else lengths[keep]
        for index, reason in skipped:
            self._report_skipped(dataset, index, reason)
        if not answered:
            answer.ClearField("batch")  # every sample was skipped
            if output is not None:
                offers.give_back(output)
        answer.sample_indices[:] = kept.tolist()
        answer.skipped.extend(pb.SkippedSample(index=i, reason=r) for i, r in sorted(skipped))
        return framing.Framed(answer, payloads)

    def _report_skipped(self, dataset: Served, index: int, reason: str) -> None:
        """Count every skip; log each sample once, with where its bytes are."""
        self.metrics.dataset_skipped.labels(dataset.name).inc()
        if (dataset.name, index) not in self._logged_skips:
            self._logged_skips.add((dataset.name, index))
            where = dataset.where(index) if hasattr(dataset, "where") else f"index {index}"
            log.warning("dataset %s: skipped sample %d (%s): %s", dataset.name, index, where, reason)

    async def _dataset(self, name: str, context) -> Served:
        if name not in self.loaders:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"dataset: unknown dataset {shown(name)} "
                                f"(served: {', '.join(sorted(self.loaders))})")
        if name not in self.loaded:
            try:
                self.loaded[name] = await asyncio.get_running_loop().run_in_executor(None, self.loaders[name])
            except ImportError as error:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"dataset {name!r} needs a package this server lacks: {error}")
            except ValueError as error:  # a table whose rows could not be read or balanced: its file is wrong
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"dataset {name!r} cannot be served: "
                                    f"{str(error)[:1000]}")
        return self.loaded[name]

    def infos(self) -> list[pb.DatasetInfo]:
        """Every served dataset by name; sizes and shapes for those loaded so far (audio folders: as indexed)."""
        infos = []
        for name in sorted(self.loaders):
            info = pb.DatasetInfo(name=name)
            loaded, loader = self.loaded.get(name), self.loaders[name]
            if loaded is None and isinstance(loader, TableSource):
                loaded = loader.ready  # read in the background since start-up
            if loaded is None and isinstance(loader, TextDataset):
                loaded = loader  # read whole at start-up
            if loaded is None and isinstance(loader, AudioFolder):  # its shape is known before decoding
                info.modality, info.size, info.num_classes = "waveform", len(loader), loader.num_classes
                info.sample_shape.append(loader.length)
                info.dtype = "float32"
            elif loaded is None and isinstance(loader, TableSource):  # columns known from the header; rows not
                info.modality, info.dtype = "tabular", "float32"
                info.sample_shape.append(loader.features)
            elif loaded is not None:
                info.modality, info.size, info.num_classes = loaded.modality, len(loaded), loaded.num_classes
                if isinstance(loaded, FileDataset):
                    info.dtype, info.shards = "encoded", loaded.shards
                elif isinstance(loaded, TextDataset):
                    info.dtype = "str"
                else:
                    info.sample_shape.extend(loaded.x.shape[1:])
                    info.dtype = wire.dtype_name(loaded.x)
            infos.append(info)
        return infos
