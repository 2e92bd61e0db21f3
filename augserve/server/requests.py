"""From a request to a job: every field checked against the server's limits, nothing run yet.

Augment, AugmentStream and the served-dataset streams all come through ``JobBuilder.build``. A
client's request brings its tensors in the message (or in its shared-memory regions); a served
batch brings them as tensors read on the server, never as a message written and parsed back.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import threading
from dataclasses import dataclass
from typing import Callable

import torch

from augserve import framing, wire
from augserve.encoded import EncodedBatch
from augserve.labels import MAX_CLASSES, as_soft_labels
from augserve.pipeline import OUT_DTYPES, Pipeline
from augserve.presets import PRESETS
from augserve.spec import is_spec_text, shown
from augserve.spec_text import MAX_SPEC_CHARS
from augserve.server.caller import Caller
from augserve.server.config import ServerConfig
from augserve.server.errors import Refused, invalid
from augserve.server.jobs import Job
from augserve.server.tenants import TenantRefused, Tenants
from augserve.server.texts import modality_refused, read_texts
from augserve.shared_memory import RegionCache
from augserve.text.batch import SentenceError
from augserve.v1 import augserve_pb2 as pb

Input = torch.Tensor | EncodedBatch | list[str]  # list[str]: sentences
INPUTS = ("x", "encoded", "texts")  # the request's fields that may hold its samples: exactly one does


class CompiledSpecs:
    """Compiled pipelines by (spec text, strength), least recently used first out, bounded in count and
    in the characters of the texts they are kept by (a spec may be 64 Ki; a compiled one is a few times that)."""

    def __init__(self, max_entries: int = 256, max_chars: int = 4 << 20):
        self.max_entries, self.max_chars = max_entries, max_chars
        self._kept: collections.OrderedDict[tuple[str, float], Pipeline] = collections.OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, text: str, strength: float) -> Pipeline:
        key = (text, strength)
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        pipeline = Pipeline.from_spec(text).at_strength(strength)
        with self._lock:
            if key not in self._kept:
                self._kept[key] = pipeline
                self._chars += len(text)
            while len(self._kept) > self.max_entries or self._chars > self.max_chars:
                (dropped, _), _ = self._kept.popitem(last=False)
                self._chars -= len(dropped)
        return pipeline

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def text_chars(self) -> int:
        return self._chars


MAX_SPELLED_LABELS = 64


def spec_label(text: str) -> str:
    """How metrics name an inline spec: a short hash, so label values stay few and short."""
    return "spec:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _classes(labels: torch.Tensor | None, num_classes: int) -> int:
    """The soft labels' width, where the labels are well formed (else ``as_soft_labels`` says what is wrong)."""
    if labels is None:
        return 0
    if labels.is_floating_point():
        return labels.shape[1] if labels.dim() == 2 else 0
    return num_classes if 1 <= num_classes <= MAX_CLASSES else 0


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
    lengths: torch.Tensor | None = None  # int64, each waveform's valid length; None: every row is whole

    @classmethod
    def of(cls, request: pb.AugmentRequest) -> "Asked":
        return cls(request.pipeline, request.seed,
                   torch.tensor(list(request.keys), dtype=torch.int64) if request.keys else None,
                   request.out_dtype, request.defer_normalize, request.return_params, request.num_classes,
                   request.output_shm if request.HasField("output_shm") else None, request.request_id,
                   torch.tensor(list(request.lengths), dtype=torch.int64) if request.lengths else None)


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
        self.compiled = CompiledSpecs()
        self._spelled: set[str] = set()  # label values given to timm strings and specs (``label``)

    def label(self, ref: pb.PipelineRef) -> str:
        """The pipeline's name in metrics, known before the request is checked: a served pipeline's or preset's
        own; a timm string or a spec's hash once one like it has compiled, for the first ``MAX_SPELLED_LABELS``
        of them; else "(other)". No client can grow the label values or put its text in them."""
        kind = ref.WhichOneof("kind")
        if kind is None:
            return "?"
        name = getattr(ref, kind).strip()
        if kind == "name" and (name in self.pipelines or name in PRESETS):
            return name
        spelled = self._spelled_label(kind, getattr(ref, kind))
        return spelled if spelled in self._spelled else "(other)"

    def pipeline(self, ref: pb.PipelineRef, field: str) -> tuple[Pipeline, str]:
        """The compiled pipeline a request names (served name, preset, timm string) or spells out."""
        kind = ref.WhichOneof("kind")
        if kind is None:
            raise invalid(f"{field}: expected a pipeline name or spec, got neither")
        text = getattr(ref, kind)
        if kind == "name" and text in self.pipelines:
            text = json.dumps(self.pipelines[text][1])
        try:
            pipeline = self.compiled.get(text, ref.strength if ref.HasField("strength") else 1.0)
        except ValueError as error:
            message = str(error)
            raise invalid(message if message.startswith(f"{field}:") else f"{field}: {message}") from None
        if len(self._spelled) < MAX_SPELLED_LABELS:
            self._spelled.add(self._spelled_label(kind, getattr(ref, kind)))
        return pipeline, self.label(ref)

    @staticmethod
    def _spelled_label(kind: str, text: str) -> str:
        if len(text) > MAX_SPEC_CHARS:
            return "(other)"
        name = text.strip()
        if kind == "name" and not is_spec_text(name):
            return name if len(name) <= 64 else "(other)"  # a timm string, once it compiled
        return spec_label(text)

    def from_request(self, request: framing.Framed, caller: Caller) -> Built:
        """A client's request, its tensors read from the received bytes or its regions."""
        message = request.message
        for field, values in (("keys", message.keys), ("lengths", message.lengths)):
            if len(values) > self.config.max_samples:  # before a tensor is made of them
                raise invalid(f"{field}: expected at most {self.config.max_samples} values (one per sample), got "
                              f"{len(values)}")
        labels = (lambda: wire.to_torch(message.labels, "labels", ("int64", "float32"),
                                        data=request.payload(framing.LABELS))) \
            if message.HasField("labels") else (lambda: None)
        return self.build(Asked.of(message), caller, lambda: self._input(request), labels)

    def build(self, asked: Asked, caller: Caller, read_x: Callable[[], Input],
              read_labels: Callable[[], torch.Tensor | None]) -> Built:
        """The job for a request, every field checked in the order a caller can fix them: the pipeline and
        tenant first, then the samples (read only now, so a refused request costs no region read)."""
        pipeline, name = self.pipeline(asked.pipeline, "pipeline")
        try:
            tenant = self.tenants.of(caller.metadata, caller.peer)
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
        encoded, sentences = isinstance(x, EncodedBatch), isinstance(x, list)
        refused = modality_refused(pipeline, "texts" if sentences else "encoded" if encoded else "x", sentences)
        if refused is not None:
            raise refused
        batch = len(x) if encoded or sentences or x.dim() else 0
        field = "encoded.images" if encoded else "texts" if sentences else "x.shape[0]"
        if not 1 <= batch <= self.config.max_samples:
            raise invalid(f"{field}: expected 1 to {self.config.max_samples} samples, got {batch}")
        if not encoded and not sentences:  # encoded images had each header checked against the limit already
            self._check_plane(tuple(x.shape), "x.shape", "got")
        keys = torch.arange(batch) if asked.keys is None else asked.keys
        if keys.shape[0] != batch:
            raise invalid(f"keys: expected {batch} keys (one per sample) or none, got {keys.shape[0]}")
        if asked.lengths is not None and asked.lengths.shape[0] != batch:
            raise invalid(f"lengths: expected {batch} valid lengths (one per sample) or none, "
                          f"got {asked.lengths.shape[0]}")
        if asked.out_dtype and asked.out_dtype not in OUT_DTYPES:
            raise invalid(f"out_dtype: expected one of {', '.join(OUT_DTYPES)} or empty, "
                          f"got {shown(asked.out_dtype)}")
        out_dtype = OUT_DTYPES.get(asked.out_dtype) if asked.out_dtype and deferred is None else None
        if sentences and output is not None:
            raise invalid("output_shm: sentences come back in the answer's texts; leave output_shm out")
        try:
            if sentences:  # tokenized now, so each one's words are counted against max_words before it queues
                x = pipeline.text.encode(x, lengths=asked.lengths, field="texts")
            # the pipeline's own checks (rank, dtype, modality, NaN, lengths, a size-fixing first step), before work
            checked = pipeline.check(x, out_dtype, None if sentences else asked.lengths)
            raw = read_labels()
        except SentenceError:
            raise  # INVALID_ARGUMENT naming it (``status_of``), or left out of a served dataset's batch
        except ValueError as error:
            raise invalid(str(error)) from None
        self._check_output(checked.shape, checked.dtype, output, batch * _classes(raw, asked.num_classes) * 4)
        try:
            labels = None if raw is None else as_soft_labels(raw, batch, asked.num_classes or None,
                                                             torch.device("cpu"))
        except ValueError as error:
            raise invalid(str(error)) from None
        if sentences or any(step.mixes_samples for step in pipeline.steps):
            merge_key = None  # sentences run alone: a batch's word list and synonym table are its own
        else:
            layout = ("encoded",) if encoded else (tuple(x.shape[1:]), x.dtype)
            # with lengths or without: an answer carries lengths only where its own request (or a step) gave them
            merge_key = (name, pipeline.strength, deferred is None, *layout, out_dtype,
                         None if labels is None else labels.shape[1], asked.lengths is None)
        job = Job(checked, merge_key, caller, labels, keys, asked.seed, caller.deadline, output=output, tenant=tenant,
                  reports=asked.return_params)
        return Built(job, name, deferred, asked)

    def _input(self, framed: framing.Framed) -> Input:
        """The request's dense ``x``, its ``encoded`` images or its ``texts`` (exactly one), every field checked."""
        request = framed.message
        given = [name for name, present in zip(INPUTS, (request.HasField("x"), request.HasField("encoded"),
                                                         len(request.texts) > 0)) if present]
        if len(given) != 1:
            raise invalid(f"{', '.join(INPUTS)}: expected exactly one (a dense tensor, encoded images or sentences), "
                          f"got {' and '.join(given) or 'none'}")
        if given == ["texts"]:
            return read_texts(request.texts, self.config.max_samples)
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

    def _check_output(self, shape: tuple[int, ...], dtype: torch.dtype | None, output, label_bytes: int) -> None:
        """The answer's size (the batch, its soft labels), known from the pipeline and the request before any
        work, within the same limits as the input's. A batch written to the client's region travels as a
        reference; the labels always travel in the message. Sentences (``dtype`` None) are sized by their edits:
        only their labels count here, and the answer is measured whole before it is sent (``Answers``)."""
        if dtype is None:
            nbytes, batch = 0, f"{shape[0]} sentences"
        else:
            self._check_plane(shape, "pipeline", f"but it returns {list(shape)}, a plane of")
            nbytes = math.prod(shape) * dtype.itemsize
            batch = f"{list(shape)} {wire.dtype_name(dtype)} = {nbytes} bytes"
        inline = 0 if output is not None and nbytes <= output.nbytes else nbytes
        if inline + label_bytes > self.config.max_message_bytes:
            labels = f" and {label_bytes}-byte soft labels" if label_bytes else ""
            raise invalid(f"answer: {batch}{labels}, more than the "
                          f"{self.config.max_message_bytes}-byte message limit (--max-message-bytes); "
                          "send fewer samples, a smaller size or fewer classes")
