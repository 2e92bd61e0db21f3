"""A real augserve server on an ephemeral loopback port, run on its own event-loop thread."""

from __future__ import annotations

import socket
import time

import grpc
import numpy as np
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from augserve import wire
from augserve.server.app import BackgroundServer
from augserve.server.config import ServerConfig
from augserve.spec import is_spec_text
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
    if is_spec_text(pipeline):
        message.pipeline.spec = pipeline
    else:
        message.pipeline.name = pipeline
    wire.write(message.x, torch.as_tensor(x))
    if keys is not None:
        message.keys.extend(list(keys))
    if labels is not None:
        wire.write(message.labels, torch.as_tensor(labels))
    return message


def tensor(message: pb.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.array(wire.to_numpy(message, "response")))


class ServerProcess:
    """``augserve serve`` in a real subprocess on a free loopback port; waits until health says SERVING."""

    def __init__(self, *flags: str, start_timeout: float | None = 90.0, env: dict | None = None,
                 port: int | None = None):
        import os
        import subprocess
        import sys

        self.port, self.metrics_port = port or free_port(), free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "augserve.cli", "serve", "--port", str(self.port),
             "--metrics-port", str(self.metrics_port), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
        self.channel = grpc.insecure_channel(self.target)
        if start_timeout:
            self.wait_for(health_pb2.HealthCheckResponse.SERVING, start_timeout)

    @classmethod
    def several(cls, count: int, *flags: str, start_timeout: float = 180.0) -> list["ServerProcess"]:
        """``count`` replicas started side by side, each SERVING on return."""
        replicas = [cls(*flags, start_timeout=None) for _ in range(count)]
        for replica in replicas:
            replica.wait_for(health_pb2.HealthCheckResponse.SERVING, start_timeout)
        return replicas

    def health(self, timeout: float = 1.0, service: str = "") -> int:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(self.channel).Check(request, timeout=timeout).status

    def wait_for(self, status: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.process.stdout.read()}")
            try:
                if self.health() == status:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server on {self.target} did not report {status} within {timeout}s")

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a Prometheus sample over series whose labels include ``labels``."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == name and labels.items() <= sample.labels.items())

    def stop(self) -> str:
        """Kill if still running; the server's output."""
        self.channel.close()
        if self.process.poll() is None:
            self.process.kill()
        return self.process.communicate(timeout=10)[0]


def make_certificates(folder) -> dict[str, str]:
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate, signed by it."""
    import pathlib
    import subprocess

    folder = pathlib.Path(folder)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    paths = {name: str(folder / f"{name}.pem") for name in
             ("ca", "ca_key", "server", "server_key", "client", "client_key")}
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=augserve test CA",
            "-keyout", paths["ca_key"], "-out", paths["ca"])
    for name, extension in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                            ("client", "extendedKeyUsage=clientAuth")):
        request = str(folder / f"{name}.csr")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", paths[f"{name}_key"],
                "-out", request)
        extfile = folder / f"{name}.ext"
        extfile.write_text(extension + "\n")
        openssl("x509", "-req", "-in", request, "-CA", paths["ca"], "-CAkey", paths["ca_key"], "-CAcreateserial",
                "-days", "1", "-extfile", str(extfile), "-out", paths[name])
    return paths
