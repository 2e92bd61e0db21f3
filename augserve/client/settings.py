"""Client settings: what it takes to (re)open a channel, and how a dropped stream fails over."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import grpc

from augserve.client.channel import COMPRESSION, TLS, describe, is_local, open_channel
from augserve.client.errors import DeadlineExceeded, from_rpc_error
from augserve.client.fork_safety import channel_opening
from augserve.transport import PROBE_HEADER, TENANT_HEADER

log = logging.getLogger("augserve.client")
MiB = 1 << 20
FAILOVER_BACKOFF_S = 0.2


@dataclass(frozen=True)
class ClientSettings:
    """Everything needed to (re)open a channel: a client pickles as its settings, never its channel."""

    targets: str | list[str] | tuple[str, ...]
    timeout: float | None = 60.0  # seconds per unary call
    token: str | None = field(default=None, repr=False)
    tls: TLS | bool | None = None
    compression: str | None = None  # None, "gzip" or "deflate"
    retries: int = 4  # extra attempts of a call that met UNAVAILABLE (gRPC retry policy)
    failovers: int = 3  # times a dropped stream resumes on another replica
    max_message_bytes: int = 256 * MiB
    shared_memory: bool | None = None  # tensors through /dev/shm; None: when every target is on this host
    tenant: str | None = None  # the x-augserve-tenant header; None: $AUGSERVE_TENANT, else none (the connection)

    def __post_init__(self):
        if self.compression not in COMPRESSION:
            raise ValueError(f"compression: expected one of {[k for k in COMPRESSION if k]} or None, "
                             f"got {self.compression!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout: expected seconds > 0 or None, got {self.timeout!r}")
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
        """Per-call options; ``probe``: the call is the client's own check, not a user's request."""
        metadata = (*(self.metadata or ()), (PROBE_HEADER, "shared-memory")) if probe else self.metadata
        return {"metadata": metadata, "compression": COMPRESSION[self.compression]}

    def failover_delay(self, error: grpc.RpcError | None, attempt: int, lost: bool = False, stalled: bool = False) -> float:
        """Seconds to back off before a dropped stream resumes on another replica; raises the
        ``ServerError`` when it may not (not UNAVAILABLE nor ``lost``, or out of failovers). ``stalled``: the
        client cancelled the stream after ``timeout`` seconds without an answer (a replica stuck but alive)."""
        if stalled and attempt >= self.failovers:
            raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer for {self.timeout:g} s on the "
                                   f"stream (the client's timeout), after {attempt} failovers", describe(self.targets))
        if not (lost or stalled or error.code() == grpc.StatusCode.UNAVAILABLE) or attempt >= self.failovers:
            raise from_rpc_error(error, describe(self.targets)) from None
        delay = FAILOVER_BACKOFF_S * (attempt + 1)
        reason = f"no answer for {self.timeout:g} s" if stalled else f"{error.code().name}: {error.details()}"
        log.warning("stream to %s ended (%s); resuming on another replica in %.1f s (failover %d of %d)",
                    describe(self.targets), reason, delay, attempt + 1, self.failovers)
        return delay
