from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data", "shm")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHM_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    shm: SharedMemoryRef
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., shm: _Optional[_Union[SharedMemoryRef, _Mapping]] = ...) -> None: ...

class SharedMemoryRef(_message.Message):
    __slots__ = ("name", "offset", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset: int
    size: int
    def __init__(self, name: _Optional[str] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class PipelineRef(_message.Message):
    __slots__ = ("name", "spec", "strength")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: str
    strength: float
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[str] = ..., strength: _Optional[float] = ...) -> None: ...

class EncodedImages(_message.Message):
    __slots__ = ("images", "shm", "sizes")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SHM_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    shm: SharedMemoryRef
    sizes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, images: _Optional[_Iterable[bytes]] = ..., shm: _Optional[_Union[SharedMemoryRef, _Mapping]] = ..., sizes: _Optional[_Iterable[int]] = ...) -> None: ...

class AugmentRequest(_message.Message):
    __slots__ = ("pipeline", "seed", "x", "encoded", "keys", "labels", "num_classes", "out_dtype", "return_params", "request_id", "output_shm", "defer_normalize", "lengths", "texts")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    OUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    RETURN_PARAMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHM_FIELD_NUMBER: _ClassVar[int]
    DEFER_NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    pipeline: PipelineRef
    seed: int
    x: Tensor
    encoded: EncodedImages
    keys: _containers.RepeatedScalarFieldContainer[int]
    labels: Tensor
    num_classes: int
    out_dtype: str
    return_params: bool
    request_id: int
    output_shm: SharedMemoryRef
    defer_normalize: bool
    lengths: _containers.RepeatedScalarFieldContainer[int]
    texts: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, pipeline: _Optional[_Union[PipelineRef, _Mapping]] = ..., seed: _Optional[int] = ..., x: _Optional[_Union[Tensor, _Mapping]] = ..., encoded: _Optional[_Union[EncodedImages, _Mapping]] = ..., keys: _Optional[_Iterable[int]] = ..., labels: _Optional[_Union[Tensor, _Mapping]] = ..., num_classes: _Optional[int] = ..., out_dtype: _Optional[str] = ..., return_params: _Optional[bool] = ..., request_id: _Optional[int] = ..., output_shm: _Optional[_Union[SharedMemoryRef, _Mapping]] = ..., defer_normalize: _Optional[bool] = ..., lengths: _Optional[_Iterable[int]] = ..., texts: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Normalization(_message.Message):
    __slots__ = ("mean", "std")
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ...) -> None: ...

class AugmentResponse(_message.Message):
    __slots__ = ("x", "labels", "params_json", "server_seconds", "request_id", "label_smoothing", "deferred_normalize", "lengths", "texts")
    X_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    SERVER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    x: Tensor
    labels: Tensor
    params_json: str
    server_seconds: float
    request_id: int
    label_smoothing: float
    deferred_normalize: Normalization
    lengths: _containers.RepeatedScalarFieldContainer[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, x: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Union[Tensor, _Mapping]] = ..., params_json: _Optional[str] = ..., server_seconds: _Optional[float] = ..., request_id: _Optional[int] = ..., label_smoothing: _Optional[float] = ..., deferred_normalize: _Optional[_Union[Normalization, _Mapping]] = ..., lengths: _Optional[_Iterable[int]] = ..., texts: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamDatasetRequest(_message.Message):
    __slots__ = ("dataset", "pipeline", "batch_size", "epoch", "seed", "shard_index", "num_shards", "start_batch", "out_dtype", "return_params", "defer_normalize", "even_shards")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    NUM_SHARDS_FIELD_NUMBER: _ClassVar[int]
    START_BATCH_FIELD_NUMBER: _ClassVar[int]
    OUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    RETURN_PARAMS_FIELD_NUMBER: _ClassVar[int]
    DEFER_NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    EVEN_SHARDS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    pipeline: PipelineRef
    batch_size: int
    epoch: int
    seed: int
    shard_index: int
    num_shards: int
    start_batch: int
    out_dtype: str
    return_params: bool
    defer_normalize: bool
    even_shards: bool
    def __init__(self, dataset: _Optional[str] = ..., pipeline: _Optional[_Union[PipelineRef, _Mapping]] = ..., batch_size: _Optional[int] = ..., epoch: _Optional[int] = ..., seed: _Optional[int] = ..., shard_index: _Optional[int] = ..., num_shards: _Optional[int] = ..., start_batch: _Optional[int] = ..., out_dtype: _Optional[str] = ..., return_params: _Optional[bool] = ..., defer_normalize: _Optional[bool] = ..., even_shards: _Optional[bool] = ...) -> None: ...

class SkippedSample(_message.Message):
    __slots__ = ("index", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    reason: str
    def __init__(self, index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class DatasetBatch(_message.Message):
    __slots__ = ("batch", "batch_index", "num_batches", "sample_indices", "skipped", "padding")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    BATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    NUM_BATCHES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INDICES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    batch: AugmentResponse
    batch_index: int
    num_batches: int
    sample_indices: _containers.RepeatedScalarFieldContainer[int]
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedSample]
    padding: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, batch: _Optional[_Union[AugmentResponse, _Mapping]] = ..., batch_index: _Optional[int] = ..., num_batches: _Optional[int] = ..., sample_indices: _Optional[_Iterable[int]] = ..., skipped: _Optional[_Iterable[_Union[SkippedSample, _Mapping]]] = ..., padding: _Optional[_Iterable[bool]] = ...) -> None: ...

class DatasetStreamMessage(_message.Message):
    __slots__ = ("start", "outputs")
    START_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    start: StreamDatasetRequest
    outputs: _containers.RepeatedCompositeFieldContainer[SharedMemoryRef]
    def __init__(self, start: _Optional[_Union[StreamDatasetRequest, _Mapping]] = ..., outputs: _Optional[_Iterable[_Union[SharedMemoryRef, _Mapping]]] = ...) -> None: ...

class ListPipelinesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PipelineInfo(_message.Message):
    __slots__ = ("name", "description", "spec_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    spec_json: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., spec_json: _Optional[str] = ...) -> None: ...

class ListPipelinesResponse(_message.Message):
    __slots__ = ("pipelines",)
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    pipelines: _containers.RepeatedCompositeFieldContainer[PipelineInfo]
    def __init__(self, pipelines: _Optional[_Iterable[_Union[PipelineInfo, _Mapping]]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("name", "modality", "sample_shape", "dtype", "size", "num_classes", "shards")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    modality: str
    sample_shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    size: int
    num_classes: int
    shards: int
    def __init__(self, name: _Optional[str] = ..., modality: _Optional[str] = ..., sample_shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., size: _Optional[int] = ..., num_classes: _Optional[int] = ..., shards: _Optional[int] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ...) -> None: ...

class ServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfoResponse(_message.Message):
    __slots__ = ("version", "device", "max_message_bytes", "max_samples_per_request", "max_pixels", "max_queue", "max_batch", "max_delay_ms", "encoded_formats")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODED_FORMATS_FIELD_NUMBER: _ClassVar[int]
    version: str
    device: str
    max_message_bytes: int
    max_samples_per_request: int
    max_pixels: int
    max_queue: int
    max_batch: int
    max_delay_ms: float
    encoded_formats: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., device: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., max_samples_per_request: _Optional[int] = ..., max_pixels: _Optional[int] = ..., max_queue: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_delay_ms: _Optional[float] = ..., encoded_formats: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TenantInfo(_message.Message):
    __slots__ = ("name", "source", "weight", "max_queue", "max_in_flight", "queued_samples", "in_flight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    weight: float
    max_queue: int
    max_in_flight: int
    queued_samples: int
    in_flight: int
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., weight: _Optional[float] = ..., max_queue: _Optional[int] = ..., max_in_flight: _Optional[int] = ..., queued_samples: _Optional[int] = ..., in_flight: _Optional[int] = ...) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantInfo]
    def __init__(self, tenants: _Optional[_Iterable[_Union[TenantInfo, _Mapping]]] = ...) -> None: ...
