"""The thin augserve client: numpy/torch in, augmented torch/numpy out; needs grpcio, protobuf, numpy, torch.

``Client`` / ``AsyncClient`` talk to one server or several replicas; ``RemoteAugment`` wraps a
DataLoader (of dense batches, or of file bytes from ``EncodedImageFolder`` that the server
decodes); ``RemoteDataset`` streams a dataset the server reads. Failures are ``ServerError``s.
"""

from augserve.client.aio import AsyncClient
from augserve.client.channel import TLS
from augserve.client.codec import Batch
from augserve.client.dataset import RemoteDataset
from augserve.client.files import EncodedImageFolder, collate_encoded
from augserve.client.errors import (Cancelled, DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument,
                                    ResourceExhausted, ServerError, Unauthenticated, Unavailable)
from augserve.client.loader import IndexedDataset, RemoteAugment
from augserve.client.sync import Client

__all__ = ["AsyncClient", "Batch", "Cancelled", "Client", "DeadlineExceeded", "EncodedImageFolder",
           "FailedPrecondition", "IndexedDataset", "collate_encoded",
           "Internal", "InvalidArgument", "RemoteAugment", "RemoteDataset", "ResourceExhausted", "ServerError",
           "TLS", "Unauthenticated", "Unavailable"]
