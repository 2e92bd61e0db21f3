"""Client settings: what it takes to (re)open a channel, and how a dropped stream fails over."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import grpc

from augserve.client.channel import COMPRESSION, TLS, describe, is_local, one_replica, open_channel
from augserve.client.errors import DeadlineExceeded, from_rpc_error
from augserve.client.fork_safety import channel_opening
from augserve.transport import PROBE_HEADER, TENANT_HEADER

log = logging.getLogger("augserve.client")
MiB = 1 << 20
FAILOVER_BACKOFF_S = 0.2
PROBE_TIMEOUT_S = 60.0  # the shared-memory probe's bound when the client's timeout is None: it is the client's own call


@dataclass(frozen=True)
class ClientSettings:
    """Everything needed to (re)open a channel: a client pickles as its settings, never its channel."""

    targets: str | list[str] | tuple[str, ...]
    timeout: float | None = 60.0  # seconds per unary call
    token: str | None = field(default=None, repr=False)
    tls: TLS | bool | None = None
    compression: str | None = None  # None, "gzip" or "deflate"
    retries: int = 4  # extra attempts of a call that met UNAVAILABLE (gRPC retry policy)
    failovers: int = 3  # times a dropped stream resumes on another replica (or reconnects to its one target)
    max_message_bytes: int = 256 * MiB
    shared_memory: bool | None = None  # tensors through /dev/shm; None: when every target is on this host
    tenant: str | None = None  # the x-augserve-tenant header; None: $AUGSERVE_TENANT, else none (the connection)
    wait_for_ready: bool | None = None  # wait for a server: None until one was reached, True always, False never

    def __post_init__(self):
        if self.compression not in COMPRESSION:
            raise ValueError(f"compression: expected one of {[k for k in COMPRESSION if k]} or None, "
                             f"got {self.compression!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout: expected seconds > 0 or None, got {self.timeout!r}")
        if self.wait_for_ready not in (None, True, False):
            raise ValueError(f"wait_for_ready: expected None, True or False, got {self.wait_for_ready!r}")
        if self.tls is True:
            object.__setattr__(self, "tls", TLS())
        object.__setattr__(self, "tls", self.tls or None)
        if self.shared_memory is None:
            object.__setattr__(self, "shared_memory", is_local(self.targets))
        if self.tenant is None:
            object.__setattr__(self, "tenant", os.environ.get("AUGSERVE_TENANT") or None)

    @property
    def metadata(self):
        pairs = ((("authorization", f"Bearer {self.token}"),) if self.token else ()) + \
            (((TENANT_HEADER, self.tenant),) if self.tenant else ())
        return pairs or None

    def open_channel(self, aio: bool = False):
        channel_opening()
        return open_channel(self.targets, self.tls, self.retries + 1, self.max_message_bytes, aio)

    def call_options(self, probe: bool = False) -> dict:
        """Per-call options; ``probe``: the call is the client's own check, not a user's request. gRPC's own
        wait_for_ready only with ``wait_for_ready=True``: by default a call fails fast once a server was reached
        (the first call's wait is ``calls.Readiness``'s), so a lost replica is noticed at once and streams fail over."""
        metadata = (*(self.metadata or ()), (PROBE_HEADER, "shared-memory")) if probe else self.metadata
        return {"metadata": metadata, "compression": COMPRESSION[self.compression],
                "wait_for_ready": self.wait_for_ready is True}

    @property
    def probe_timeout(self) -> float:
        """The shared-memory probe's bound: the client's timeout, and never unbounded."""
        return self.timeout if self.timeout is not None else PROBE_TIMEOUT_S

    def failover_delay(self, error: grpc.RpcError | None, attempt: int, lost: bool = False, stalled: bool = False) -> float:
        """Seconds to back off before a dropped stream resumes (on another replica, or its one target again); raises
        the ``ServerError`` when it may not (not UNAVAILABLE nor ``lost``, or out of failovers). ``stalled``: the
        client cancelled the stream after ``timeout`` seconds without an answer (a replica stuck but alive)."""
        if stalled and attempt >= self.failovers:
            raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer for {self.timeout:g} s on the "
                                   f"stream (the client's timeout), after {attempt} failovers", describe(self.targets))
        if not (lost or stalled or error.code() == grpc.StatusCode.UNAVAILABLE) or attempt >= self.failovers:
            raise from_rpc_error(error, describe(self.targets)) from None
        delay = FAILOVER_BACKOFF_S * (attempt + 1)
        reason = f"no answer for {self.timeout:g} s" if stalled else f"{error.code().name}: {error.details()}"
        target = describe(self.targets)
        # one server: nowhere else to go, so no "another replica" (dns: names and lists may hold several)
        step = (f"reconnecting to {target}", "attempt") if one_replica(self.targets) else \
            ("resuming on another replica", "failover")
        log.warning("stream to %s ended (%s); %s in %.1f s (%s %d of %d)", target, reason, step[0], delay, step[1],
                    attempt + 1, self.failovers)
        return delay
