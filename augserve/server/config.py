"""Server settings: defaults, command-line flags and AUGSERVE_* environment variables."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field

import yaml

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
    shared_epoch_bytes: int = 256 * MiB  # answers kept for streams of the same epoch (shared_epochs.py); 0: off
    decoded_window_bytes: int = 256 * MiB  # decoded served images kept for other jobs' streams (encoded/window.py)
    token: str | None = None  # bearer token; None: no auth
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None  # with cert/key: require client certificates (mTLS)
    grace_seconds: float = 20.0  # in-flight work gets this long to finish after SIGTERM
    threads: int = 0  # intra-op CPU threads of the device worker; 0: as many as the host's load leaves free
    decode_ahead: str = "auto"  # decode encoded images as they arrive, beside the device: on, off, auto (accelerators)
    cuda_graphs: str = "on"  # on CUDA, capture each kind of device-plan call once and replay it: on or off
    drain_delay_seconds: float = 0.0  # first, this long NOT_SERVING while refusing new work (load balancers see it)
    translate: bool = False  # back_translation translates sentences no paraphrase file holds, with apertium (slow)
    config: str | None = None  # YAML file: named pipelines and datasets
    datasets: dict = field(default_factory=dict)  # more dataset entries, as in the file


FILE_SECTIONS = ("pipelines", "datasets", "tenants", "language_models")


def read_config_file(path: str | None) -> dict:
    """The sections of a server config file (``pipelines:``, ``datasets:``, ``tenants:``, ``language_models:``);
    unknown keys are refused."""
    if not path:
        return {}
    try:
        data = yaml.safe_load(pathlib.Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"--config {path}: {error}") from None
    if not isinstance(data, dict) or set(data) - set(FILE_SECTIONS):
        keys = sorted(set(data) - set(FILE_SECTIONS)) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"--config {path}: expected a mapping with sections {', '.join(FILE_SECTIONS)}, got {keys}")
    return data


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
