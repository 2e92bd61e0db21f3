"""Assemble and run the server: gRPC (aio), health, reflection, metrics, TLS, auth, graceful drain."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import signal
import time

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from augserve.server.audio_datasets import declare_sound_sets, decode_sound_sets
from augserve.server.auth import TokenAuth
from augserve.server.batcher import Batcher
from augserve.server.catalog import named_pipelines
from augserve.server.config import ServerConfig, read_config_file
from augserve.server.cpu import ThreadBudget
from augserve.server.datasets import load_datasets
from augserve.server.handlers import service_handler
from augserve.server.metrics import Metrics
from augserve.server.servicer import AugmentationService
from augserve.server.table_datasets import declare_tables, read_tables
from augserve.server.tenants import Tenants
from augserve.text import masked_lm, paraphrases, translation
from augserve.transport import HTTP2_WINDOWS, SERVER_KEEPALIVE
from augserve.v1 import augserve_pb2

log = logging.getLogger("augserve.server")
AUGMENTATION = augserve_pb2.DESCRIPTOR.services_by_name["Augmentation"]
SERVICE = AUGMENTATION.full_name
# Health names: "" and SERVICE mean "send me work" (NOT_SERVING while warming up and draining:
# readiness); LIVENESS means "the process is alive", SERVING until it exits, so a liveness
# probe never kills a replica that is draining.
LIVENESS = "liveness"
# After SIGTERM the service refuses calls (UNAVAILABLE: retry elsewhere) until none has come for this long,
# and only then stops gRPC, whose shutdown cancels the calls it holds (CANCELLED: a client cannot tell it may
# retry). Clients that keep calling a draining replica meet that once the grace period is over.
QUIET_SECONDS = 0.2


def pick_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise ValueError(f"--device: expected auto, cpu, cuda or cuda:N, got {choice!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected auto, cpu, cuda or cuda:N, got {choice!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: {choice} requested but no CUDA device is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device: {choice} requested but this host has {torch.cuda.device_count()} CUDA "
                         f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def cuda_graphs(choice: str, device: torch.device) -> bool:
    """``--cuda-graphs``: on (where the device is CUDA) or off."""
    if choice not in ("on", "off"):
        raise ValueError(f"--cuda-graphs: expected on or off, got {choice!r}")
    return choice == "on" and device.type == "cuda"


def decode_ahead(choice: str, device: torch.device) -> bool:
    """``--decode-ahead``: on, off, or auto (on when the device is not the CPU the decoding runs on)."""
    if choice not in ("auto", "on", "off"):
        raise ValueError(f"--decode-ahead: expected auto, on or off, got {choice!r}")
    return device.type != "cpu" if choice == "auto" else choice == "on"


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not (config.tls_cert or config.tls_key):
        return None
    if not (config.tls_cert and config.tls_key):
        raise ValueError("--tls-cert and --tls-key: give both or neither")
    pair = [(pathlib.Path(config.tls_key).read_bytes(), pathlib.Path(config.tls_cert).read_bytes())]
    if config.tls_ca:
        return grpc.ssl_server_credentials(pair, root_certificates=pathlib.Path(config.tls_ca).read_bytes(),
                                           require_client_auth=True)
    return grpc.ssl_server_credentials(pair)


def declare_language_models(section: dict) -> None:
    """The config file's ``language_models: {name: checkpoint folder}``, named for contextual_substitution (each
    loaded on first use); a missing folder stops start-up naming it."""
    if not isinstance(section, dict):
        raise ValueError(f"language_models: expected a mapping of names to checkpoint folders, got {section!r}")
    for name, path in section.items():
        if not isinstance(path, str) or not pathlib.Path(path).is_dir():
            raise ValueError(f"language_models.{name}: no checkpoint folder at {path!r}: give the folder a masked "
                             "language model and its tokenizer were saved to (save_pretrained)")
        masked_lm.register(name, path)


class AugmentServer:
    """One server process on one device. ``start()``, then ``wait()`` or ``stop()``."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.device = pick_device(config.device)
        self.metrics = Metrics(self.device)
        self.threads = ThreadBudget(config.threads)
        self.batcher = Batcher(self.device, config.max_batch, config.max_delay_ms, config.max_queue, self.metrics,
                               self.threads, decode_ahead=decode_ahead(config.decode_ahead, self.device),
                               cuda_graphs=cuda_graphs(config.cuda_graphs, self.device))
        sections = read_config_file(config.config)
        self.datasets = load_datasets({**sections.get("datasets", {}), **config.datasets}, self.device)
        # steps read a served audio dataset by name (background_noise, reverb)
        decode_sound_sets(declare_sound_sets(self.datasets))
        # and a served table's column statistics (feature_noise, feature_mask: stats: <table>)
        read_tables(self.datasets, declare_tables(self.datasets))
        # text: whether back_translation translates what no paraphrase file holds, the language models steps name
        paraphrases.set_translating(config.translate)
        if config.translate:
            translation.check()  # a missing apertium stops start-up saying what to install
        declare_language_models(sections.get("language_models") or {})
        self.pipelines = named_pipelines(sections.get("pipelines", {}))
        self.tenants = Tenants(sections.get("tenants"), config.max_queue, forget=self.metrics.forget_tenant)
        self.service = AugmentationService(config, self.batcher, self.device, self.datasets, self.pipelines,
                                           self.metrics, self.tenants)
        self.server: grpc.aio.Server | None = None
        self.health: health.aio.HealthServicer | None = None
        self.port = 0
        self.tls = False
        self._stopped: asyncio.Event | None = None

    def _build(self) -> None:
        """The gRPC server, created inside the running event loop as grpc.aio requires."""
        config = self.config
        self.health = health.aio.HealthServicer()
        # --token turns authentication on; tenants' tokens are then accepted too (else they only name tenants)
        interceptors = [TokenAuth([config.token, *self.tenants.tokens])] if config.token else []
        options = [("grpc.max_receive_message_length", config.max_message_bytes),
                   ("grpc.max_send_message_length", config.max_message_bytes), *HTTP2_WINDOWS, *SERVER_KEEPALIVE,
                   ("grpc.so_reuseport", 0)]  # a second server on a busy port fails, not shares it silently
        self.server = grpc.aio.server(interceptors=interceptors, options=options)
        self.server.add_generic_rpc_handlers((service_handler(self.service, AUGMENTATION, self.service.count_refused),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        credentials = _credentials(config)
        address = f"{config.host}:{config.port}"
        try:
            self.port = self.server.add_insecure_port(address) if credentials is None else \
                self.server.add_secure_port(address, credentials)
        except RuntimeError:  # gRPC says only "Failed to bind"
            raise OSError(f"--port {config.port}: cannot listen on {address} (in use? another augserve serve?)") \
                from None
        self.tls = credentials is not None
        self._stopped = asyncio.Event()

    async def _set_status(self, status) -> None:
        for name in ("", SERVICE):
            await self.health.set(name, status)

    async def start(self) -> None:
        self._build()
        await self._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)  # warming up
        await self.server.start()
        if self.config.metrics_port:
            try:
                self.metrics.serve(self.config.metrics_port, self.config.host)
            except OSError as error:
                await self.server.stop(0)
                raise OSError(f"--metrics-port {self.config.metrics_port}: {error.strerror} (another augserve "
                              "serve? --metrics-port 0 turns metrics off)") from None
        self._warm_up()
        await self._set_status(health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        log.info("augserve listening on %s:%d (%s) on %s, %s; metrics %s; pipelines: %s; datasets: %s",
                 self.config.host, self.port, "TLS" if self.tls else "plaintext", self.device,
                 f"{self.threads.fixed} CPU threads" if self.threads.fixed else
                 f"up to {self.threads.usable} CPU threads as the host's load allows",
                 f":{self.config.metrics_port}" if self.config.metrics_port else "off",
                 ", ".join(self.pipelines), ", ".join(sorted(self.datasets)))

    def _warm_up(self) -> None:
        """Touch the device once so the first request does not pay for its initialisation."""
        torch.zeros(1, device=self.device).add_(1).cpu()

    async def stop(self, grace: float | None = None) -> None:
        """Drain: refuse new work at once (UNAVAILABLE, so clients retry elsewhere) and report NOT_SERVING;
        after the drain delay, once calls have stopped coming (``QUIET_SECONDS``), stop accepting them. In-flight
        work has the grace period, counted from the end of the drain delay, to finish."""
        grace = self.config.grace_seconds if grace is None else grace
        self.service.drain()
        await self._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
        await asyncio.sleep(self.config.drain_delay_seconds)
        waited_from = time.monotonic()
        await self.service.answers.quiet(QUIET_SECONDS, grace)  # in-flight work goes on meanwhile
        await self.server.stop(max(0.0, grace - (time.monotonic() - waited_from)))
        await self.batcher.close()
        self.service.regions.close()
        self._stopped.set()

    def _signalled(self) -> None:
        self.service.drain()  # at once: a call dispatched before ``stop`` runs is refused too
        asyncio.ensure_future(self.stop())

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then drain."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled)
        await self._stopped.wait()
        log.info("augserve stopped")


class BackgroundServer:
    """A server on its own event-loop thread: for benchmarks, tests and notebooks."""

    def __init__(self, config: ServerConfig):
        import threading

        self.config = config
        self.server = AugmentServer(config)  # a bad config fails here, before any thread starts
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="augserve-loop", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=120)
        self.target = f"{config.host}:{self.server.port}"

    def stop(self, grace: float = 1.0) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result(timeout=120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
