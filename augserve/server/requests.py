"""From a request to a job: every field checked against the server's limits, nothing run yet.

Augment, AugmentStream and the served-dataset streams all come through ``JobBuilder.build``. A
client's request brings its tensors in the message (or in its shared-memory regions); a served
batch brings them as tensors read on the server, never as a message written and parsed back.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from augserve import framing, wire
from augserve.encoded import EncodedBatch
from augserve.labels import as_soft_labels
from augserve.pipeline import OUT_DTYPES, Pipeline
from augserve.server.config import ServerConfig
from augserve.server.errors import Refused, invalid
from augserve.server.jobs import Job
from augserve.server.tenants import TenantRefused, Tenants
from augserve.shared_memory import RegionCache
from augserve.v1 import augserve_pb2 as pb

Input = torch.Tensor | EncodedBatch


@functools.lru_cache(maxsize=256)
def _compile(kind: str, text: str, strength: float) -> Pipeline:
    return Pipeline.from_spec(text).at_strength(strength)


@dataclass(frozen=True)
class Asked:
    """What a request asks for besides its samples: the same fields for a client's request and a served batch."""

    pipeline: pb.PipelineRef
    seed: int = 0
    keys: torch.Tensor | None = None  # int64, one per sample; None: 0..B-1
    out_dtype: str = ""
    defer_normalize: bool = False
    return_params: bool = False
    num_classes: int = 0
    output_shm: pb.SharedMemoryRef | None = None
    request_id: int = 0

    @classmethod
    def of(cls, request: pb.AugmentRequest) -> "Asked":
        return cls(request.pipeline, request.seed,
                   torch.tensor(list(request.keys), dtype=torch.int64) if request.keys else None,
                   request.out_dtype, request.defer_normalize, request.return_params, request.num_classes,
                   request.output_shm if request.HasField("output_shm") else None, request.request_id)


@dataclass(frozen=True)
class Built:
    """A checked request: its job, the pipeline's name (for metrics), and the normalize step the client runs."""

    job: Job
    name: str
    deferred: object | None  # the pipeline's final normalize step (``Pipeline.deferring_normalize``)
    asked: Asked


class JobBuilder:
    def __init__(self, config: ServerConfig, tenants: Tenants, pipelines: dict[str, tuple[str, object]]):
        self.config = config
        self.tenants = tenants
        self.pipelines = pipelines
        self.regions = RegionCache(max_read=config.max_message_bytes)  # same-host clients' regions

    def pipeline(self, ref: pb.PipelineRef, field: str) -> tuple[Pipeline, str]:
        """The compiled pipeline a request names (served name, preset, timm string) or spells out."""
        kind = ref.WhichOneof("kind")
        if kind is None:
            raise invalid(f"{field}: expected a pipeline name or spec, got neither")
        text = getattr(ref, kind)
        if kind == "name" and text in self.pipelines:
            kind, text, label = "spec", json.dumps(self.pipelines[text][1]), text
        else:
            label = text
        try:
            return _compile(kind, text, ref.strength if ref.HasField("strength") else 1.0), label
        except ValueError as error:
            message = str(error)
            raise invalid(message if message.startswith(f"{field}:") else f"{field}: {message}") from None

    def from_request(self, request: framing.Framed, context) -> Built:
        """A client's request, its tensors read from the received bytes or its regions."""
        message = request.message
        labels = (lambda: wire.to_torch(message.labels, "labels", ("int64", "float32"),
                                        data=request.payload(framing.LABELS))) \
            if message.HasField("labels") else (lambda: None)
        return self.build(Asked.of(message), context, lambda: self._input(request), labels)

    def build(self, asked: Asked, context, read_x: Callable[[], Input],
              read_labels: Callable[[], torch.Tensor | None]) -> Built:
        """The job for a request, every field checked in the order a caller can fix them: the pipeline and
        tenant first, then the samples (read only now, so a refused request costs no region read)."""
        pipeline, name = self.pipeline(asked.pipeline, "pipeline")
        try:
            tenant = self.tenants.of(context.invocation_metadata(), context.peer())
        except TenantRefused as refused:
            raise Refused(refused.code, str(refused)) from None
        deferred = None
        if asked.defer_normalize:
            pipeline, deferred = pipeline.deferring_normalize()
        try:
            x = read_x()
            output = None if asked.output_shm is None else \
                self.regions.span(asked.output_shm, asked.output_shm.size, "output_shm")
        except ValueError as error:  # WireError, SharedMemoryError, a bad encoded image
            raise invalid(str(error)) from None
        encoded = isinstance(x, EncodedBatch)
        batch = len(x) if encoded or x.dim() else 0
        field = "encoded.images" if encoded else "x.shape[0]"
        if not 1 <= batch <= self.config.max_samples:
            raise invalid(f"{field}: expected 1 to {self.config.max_samples} samples, got {batch}")
        if not encoded:  # encoded images had each header checked against the limit already
            self._check_plane(tuple(x.shape), "x.shape", "got")
        keys = torch.arange(batch) if asked.keys is None else asked.keys
        if keys.shape[0] != batch:
            raise invalid(f"keys: expected {batch} keys (one per sample) or none, got {keys.shape[0]}")
        if asked.out_dtype and asked.out_dtype not in OUT_DTYPES:
            raise invalid(f"out_dtype: expected one of {', '.join(OUT_DTYPES)} or empty, got {asked.out_dtype!r}")
        out_dtype = OUT_DTYPES.get(asked.out_dtype) if asked.out_dtype and deferred is None else None
        try:
            raw = read_labels()
            labels = None if raw is None else as_soft_labels(raw, batch, asked.num_classes or None,
                                                             torch.device("cpu"))
            # the pipeline's own checks (rank, dtype, modality, NaN, a size-fixing first step), before any work
            checked = pipeline.check(x, out_dtype)
        except ValueError as error:
            raise invalid(str(error)) from None
        self._check_output(checked.shape, checked.dtype, output)
        mixes = any(step.mixes_samples for step in pipeline.steps)
        layout = ("encoded",) if encoded else (tuple(x.shape[1:]), x.dtype)
        merge_key = None if mixes else (name, pipeline.strength, deferred is None, *layout, out_dtype,
                                        None if labels is None else labels.shape[1])
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        job = Job(checked, merge_key, context, labels, keys, asked.seed, deadline, output=output, tenant=tenant)
        return Built(job, name, deferred, asked)

    def _input(self, framed: framing.Framed) -> Input:
        """The request's dense ``x`` or its ``encoded`` images (exactly one), every field checked."""
        request = framed.message
        if request.HasField("x") == request.HasField("encoded"):
            given = "both" if request.HasField("x") else "neither"
            raise invalid(f"x, encoded: expected exactly one (a dense tensor or encoded images), got {given}")
        if request.HasField("x"):
            return wire.to_torch(request.x, "x", ("uint8", "float16", "float32"), self.regions,
                                 framed.payload(framing.X))
        return EncodedBatch(self._encoded_files(request.encoded), max_pixels=self.config.max_pixels,
                            field="encoded.images")

    def _encoded_files(self, message: pb.EncodedImages) -> list:
        """Each file's bytes: the repeated field, or spans of one shared-memory region (read once, then checked)."""
        if not message.HasField("shm"):
            if message.sizes:
                raise invalid("encoded.sizes: only with encoded.shm (inline images carry their own lengths)")
            files = list(message.images)
            if len(files) > self.config.max_samples:
                raise invalid(f"encoded.images: expected 1 to {self.config.max_samples} samples, got {len(files)}")
            return files
        if message.images:
            raise invalid("encoded: expected images or shm, got both")
        sizes = list(message.sizes)
        if not 1 <= len(sizes) <= self.config.max_samples:
            raise invalid(f"encoded.sizes: expected 1 to {self.config.max_samples} file lengths, got {len(sizes)}")
        if 0 in sizes:
            raise invalid(f"encoded.sizes[{sizes.index(0)}]: expected a file length, got 0 bytes")
        files = memoryview(self.regions.buffer(message.shm, sum(sizes), "encoded.shm"))
        ends = itertools.accumulate(sizes)
        return [files[end - size:end] for size, end in zip(sizes, ends)]

    def _check_plane(self, shape: tuple[int, ...], field: str, what: str) -> None:
        plane = shape[-2:] if len(shape) >= 3 else shape[-1:]  # H x W (F x T, C x T), or a waveform's length
        pixels = math.prod(plane)
        if pixels > self.config.max_pixels:
            raise invalid(f"{field}: expected at most {self.config.max_pixels} values per sample plane "
                          f"(--max-pixels), {what} {'x'.join(map(str, plane))} = {pixels}")

    def _check_output(self, shape: tuple[int, ...], dtype: torch.dtype, output) -> None:
        """The answer's size, known from the pipeline before any work, within the same limits as the input's."""
        self._check_plane(shape, "pipeline", f"but it returns {list(shape)}, a plane of")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self.config.max_message_bytes and (output is None or nbytes > output.nbytes):
            raise invalid(f"pipeline: returns {list(shape)} {wire.dtype_name(dtype)} = {nbytes} bytes, more than the "
                          f"{self.config.max_message_bytes}-byte message limit (--max-message-bytes); "
                          "send fewer samples or a smaller size")
