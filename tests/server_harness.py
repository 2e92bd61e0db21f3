"""A real augserve server on an ephemeral loopback port, run on its own event-loop thread."""

from __future__ import annotations

import socket

import grpc
import numpy as np
import torch

from augserve import wire
from augserve.server.app import BackgroundServer
from augserve.server.config import ServerConfig
from augserve.v1 import augserve_pb2 as pb
from augserve.v1 import augserve_pb2_grpc as rpc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer(BackgroundServer):
    def __init__(self, **overrides):
        overrides.setdefault("metrics_port", free_port())
        super().__init__(ServerConfig(host="127.0.0.1", port=0, **overrides))

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target, options=[("grpc.max_receive_message_length", 1 << 28)])

    def stub(self) -> rpc.AugmentationStub:
        return rpc.AugmentationStub(self.channel())


def request(x, pipeline="rand-m9-n2", seed=0, keys=None, labels=None, num_classes=0, **fields) -> pb.AugmentRequest:
    message = pb.AugmentRequest(seed=seed, num_classes=num_classes, **fields)
    if pipeline.lstrip()[:1] in "[{":
        message.pipeline.spec = pipeline
    else:
        message.pipeline.name = pipeline
    message.x.CopyFrom(wire.from_torch(torch.as_tensor(x)))
    if keys is not None:
        message.keys.extend(list(keys))
    if labels is not None:
        message.labels.CopyFrom(wire.from_torch(torch.as_tensor(labels)))
    return message


def tensor(message: pb.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.array(wire.to_numpy(message, "response")))
