"""Channels to one or several replicas: round-robin balancing and UNAVAILABLE retries by gRPC itself.

Several ``host:port`` targets become one ``ipv4:``/``ipv6:`` target list, so gRPC's
``round_robin`` policy spreads calls over every replica; a ``dns:///name:port`` target
(e.g. a Kubernetes headless Service) does the same with every address the name resolves to.
Retries come from the service config and only ever retry UNAVAILABLE.
"""

from __future__ import annotations

import json
import pathlib
import socket
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from augserve.transport import CLIENT_KEEPALIVE, HTTP2_WINDOWS, RECONNECT

SERVICE = "augserve.v1.Augmentation"
SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")
COMPRESSION = {None: grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip,
               "deflate": grpc.Compression.Deflate}


@dataclass(frozen=True)
class TLS:
    """Transport security: ``ca`` verifies the server (system roots when None); ``cert``/``key`` for mTLS."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None  # the name in the server's certificate, when it differs from the target

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path):
            return pathlib.Path(path).read_bytes() if path else None

        if bool(self.cert) != bool(self.key):
            raise ValueError("tls: give both cert and key (for mTLS) or neither")
        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


def service_config(attempts: int) -> str:
    """round_robin over the addresses whose health service says SERVING (a draining replica drops
    out), and retries of UNAVAILABLE (never of INVALID_ARGUMENT)."""
    config = {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": SERVICE}}
    if attempts > 1:
        config["methodConfig"] = [{
            "name": [{"service": SERVICE}],
            "retryPolicy": {"maxAttempts": min(attempts, 5), "initialBackoff": "0.1s", "maxBackoff": "1s",
                            "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
        }]
    return json.dumps(config)


def _split(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"targets: expected 'host:port', got {target!r}")
    return host.strip("[]"), int(port)


def channel_target(targets: str | list[str] | tuple[str, ...]) -> tuple[str, str | None]:
    """(gRPC target, host name for TLS) for one target, a list of ``host:port``, or a scheme URI."""
    if isinstance(targets, str):
        targets = [part for part in targets.split(",") if part] if "," in targets and \
            not targets.startswith(SCHEMES) else [targets]
    targets = list(targets)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"targets: expected 'host:port', a list of them or a dns:/// URI, got {targets!r}")
    if len(targets) == 1:
        only = targets[0]
        return only, None if only.startswith(SCHEMES) else _split(only)[0]
    v4, v6 = [], []
    host = None
    for target in targets:
        name, port = _split(target)
        host = host or name
        family, *_, address = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)[0]
        if family == socket.AF_INET6:
            v6.append(f"[{address[0]}]:{port}")
        else:
            v4.append(f"{address[0]}:{port}")
    if v4 and v6:
        raise ValueError(f"targets: mixing IPv4 and IPv6 replicas is not supported, got {targets!r}")
    return ("ipv4:" + ",".join(v4)) if v4 else ("ipv6:" + ",".join(v6)), host


def is_local(targets) -> bool:
    """Whether every target is on this host (loopback or a unix socket): shared memory can work."""
    target, _ = channel_target(targets)
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    if target.startswith("dns:"):
        return False
    addresses = target.split(":", 1)[1].split(",") if target.startswith(("ipv4:", "ipv6:")) else [target]
    hosts = [_split(address)[0] for address in addresses]
    return all(host in ("localhost", "::1") or host.startswith("127.") for host in hosts)


def describe(targets) -> str:
    return targets if isinstance(targets, str) else ",".join(targets)


def one_replica(targets) -> bool:
    """Whether the targets name a single server (one ``host:port`` or socket), so that a dropped stream can only
    reconnect to it; a ``dns:`` URI may resolve to several replicas (a headless Service)."""
    listed = [targets] if isinstance(targets, str) else list(targets)
    return len(listed) == 1 and "," not in listed[0] and not listed[0].startswith("dns:")


def _health_messages():
    """grpc.health.v1's request and response, built here: the client does not depend on grpcio-health-checking."""
    file = descriptor_pb2.FileDescriptorProto(name="augserve_client_health.proto", package="grpc.health.v1",
                                              syntax="proto3")
    request = file.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    response = file.message_type.add(name="HealthCheckResponse")
    response.field.add(name="status", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                       label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)  # the enum's number, same wire
    pool = descriptor_pool.DescriptorPool()  # private: no clash with grpc_health's own, when both are loaded
    pool.Add(file)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"grpc.health.v1.{name}"))
                 for name in ("HealthCheckRequest", "HealthCheckResponse"))


HealthCheckRequest, HealthCheckResponse = _health_messages()
SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def health_check(channel):
    """The standard health service's Check on a sync or ``grpc.aio`` channel."""
    return channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=HealthCheckRequest.SerializeToString,
                               response_deserializer=HealthCheckResponse.FromString)


def options(targets, tls: TLS | None, attempts: int, max_message_bytes: int) -> tuple[str, list]:
    target, host = channel_target(targets)
    opts = [("grpc.service_config", service_config(attempts)),
            ("grpc.enable_retries", int(attempts > 1)),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes), *HTTP2_WINDOWS, *CLIENT_KEEPALIVE, *RECONNECT]
    if tls is not None and (tls.server_name or (host and target.startswith(("ipv4:", "ipv6:")))):
        opts.append(("grpc.ssl_target_name_override", tls.server_name or host))
    return target, opts


def open_channel(targets, tls: TLS | None, attempts: int, max_message_bytes: int, aio: bool = False):
    """A sync or ``grpc.aio`` channel to the targets."""
    target, opts = options(targets, tls, attempts, max_message_bytes)
    module = grpc.aio if aio else grpc
    if tls is None:
        return module.insecure_channel(target, options=opts)
    return module.secure_channel(target, tls.credentials(), options=opts)
