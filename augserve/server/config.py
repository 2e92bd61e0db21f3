"""Server settings: defaults, command-line flags and AUGSERVE_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MiB = 1 << 20


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = 9090  # 0: no metrics endpoint
    device: str = "auto"
    max_batch: int = 256  # samples merged into one device batch
    max_delay_ms: float = 5.0  # how long a request may wait for others to merge with
    max_queue: int = 4096  # queued samples; beyond it, RESOURCE_EXHAUSTED at once
    max_message_bytes: int = 256 * MiB
    max_samples: int = 1024  # per request
    max_pixels: int = 4096 * 4096  # per sample: H * W (or F * T, C * T)
    token: str | None = None  # bearer token; None: no auth
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None  # with cert/key: require client certificates (mTLS)
    grace_seconds: float = 20.0  # in-flight work gets this long to finish after SIGTERM
    drain_delay_seconds: float = 0.0  # first, this long NOT_SERVING while refusing new work (load balancers see it)
    datasets_file: str | None = None
    datasets: dict = field(default_factory=dict)


ENV_PREFIX = "AUGSERVE_"


def env_default(name: str, fallback):
    """The AUGSERVE_<NAME> environment variable, converted to the fallback's type."""
    raw = os.environ.get(ENV_PREFIX + name.upper())
    if raw is None:
        return fallback
    if isinstance(fallback, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(fallback, int):
        return int(raw)
    if isinstance(fallback, float):
        return float(raw)
    return raw
