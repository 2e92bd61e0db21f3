"""The thin augserve client: numpy arrays, file bytes or sentences in, augmented numpy arrays (or sentences) out.

Needs grpcio, protobuf and numpy only. ``Client`` / ``AsyncClient`` talk to one server or several
replicas; failures are ``ServerError``s. The framework adapters load on first use and need their
framework: ``RemoteAugment`` (wraps a DataLoader), ``RemoteDataset`` (streams a dataset the server
reads) and ``IndexedDataset`` need torch, ``device_put_batches`` needs JAX.
"""

import importlib

from augserve.client.aio import AsyncClient
from augserve.client.channel import TLS
from augserve.client.batch import Batch
from augserve.client.errors import (Cancelled, DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument,
                                    ResourceExhausted, ServerError, Unauthenticated, Unavailable)
from augserve.client.files import EncodedImageFolder, collate_encoded
from augserve.extras import require
from augserve.client.sync import Client

_ADAPTERS = {"RemoteAugment": ("augserve.client.loader", "torch"),
             "IndexedDataset": ("augserve.client.loader", "torch"),
             "RemoteDataset": ("augserve.client.dataset", "torch"),
             "device_put_batches": ("augserve.client.jax_batches", "jax")}

__all__ = ["AsyncClient", "Batch", "Cancelled", "Client", "DeadlineExceeded", "EncodedImageFolder",
           "FailedPrecondition", "IndexedDataset", "Internal", "InvalidArgument", "RemoteAugment", "RemoteDataset",
           "ResourceExhausted", "ServerError", "TLS", "Unauthenticated", "Unavailable", "collate_encoded",
           "device_put_batches"]


def __getattr__(name: str):
    if name not in _ADAPTERS:
        raise AttributeError(f"module 'augserve.client' has no attribute {name!r}")
    module, framework = _ADAPTERS[name]
    require(framework, name)
    return getattr(importlib.import_module(module), name)
