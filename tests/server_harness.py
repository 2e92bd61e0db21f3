"""A real augserve server on an ephemeral loopback port, run on its own event-loop thread."""

from __future__ import annotations

import asyncio
import socket
import threading

import grpc
import numpy as np
import torch

from augserve import wire
from augserve.server.app import AugmentServer
from augserve.server.config import ServerConfig
from augserve.v1 import augserve_pb2 as pb
from augserve.v1 import augserve_pb2_grpc as rpc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    def __init__(self, **overrides):
        overrides.setdefault("metrics_port", free_port())
        self.config = ServerConfig(host="127.0.0.1", port=0, **overrides)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = AugmentServer(self.config)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=60)
        self.target = f"127.0.0.1:{self.server.port}"

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target, options=[("grpc.max_receive_message_length", 1 << 28)])

    def stub(self) -> rpc.AugmentationStub:
        return rpc.AugmentationStub(self.channel())

    def stop(self, grace: float = 1.0) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


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
