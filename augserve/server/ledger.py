"""The per-tenant books: admission against the queue and in-flight limits, and what each tenant has waiting.

A tenant is forgotten once it has nothing queued or in flight: connections and declared names come and
go, and the books must not grow with them (``Tenants`` remembers the declared names, boundedly).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from augserve.server.errors import QueueFull
from augserve.server.tenants import Tenant


@dataclass(frozen=True)
class TenantUse:
    """A tenant and what it uses of the server now (discovery's view of the books)."""

    tenant: Tenant
    queued_samples: int
    in_flight: int


class Ledger:
    def __init__(self, max_queue: int, metrics):
        self.max_queue = max_queue
        self.metrics = metrics
        self.queued = 0  # samples waiting for the device, all tenants
        self._queued: collections.Counter[str] = collections.Counter()  # per tenant
        self._in_flight: collections.Counter[str] = collections.Counter()  # requests unanswered, per tenant
        self._seen: dict[str, Tenant] = {}
        self._queued_by_label: collections.Counter[str] = collections.Counter()

    def admit(self, tenant: Tenant, samples: int) -> None:
        """Take a request of ``samples`` into the queue, or refuse it at once (QueueFull, naming the limit)."""
        if self.queued + samples > self.max_queue:
            raise QueueFull(f"queue full: {self.queued} samples queued, limit {self.max_queue}; retry later")
        if self._queued[tenant.name] + samples > tenant.max_queue:
            raise QueueFull(f"tenant {tenant.name!r}: queue full: {self._queued[tenant.name]} samples queued, "
                            f"its limit {tenant.max_queue}; retry later")
        if self._in_flight[tenant.name] >= tenant.max_in_flight:
            raise QueueFull(f"tenant {tenant.name!r}: {tenant.max_in_flight} requests in flight, its limit; "
                            "retry later")
        self._seen[tenant.name] = tenant
        self._in_flight[tenant.name] += 1
        self._queue(tenant.name, samples)

    def dequeued(self, tenant: Tenant, samples: int) -> None:
        """Samples that left the queue: run, expired or cancelled."""
        self._queue(tenant.name, -samples)

    def answered(self, tenant: Tenant) -> None:
        self._in_flight[tenant.name] -= 1
        self._forget_if_idle(tenant.name)

    def in_use(self, listed: list[Tenant]) -> list[TenantUse]:
        """The ``listed`` tenants and any other with work now, by name."""
        tenants = {tenant.name: tenant for tenant in listed}
        tenants.update((name, tenant) for name, tenant in self._seen.items() if name not in tenants)
        return [TenantUse(tenant, self._queued[tenant.name], self._in_flight[tenant.name])
                for tenant in sorted(tenants.values(), key=lambda t: t.name)]

    def seen(self) -> list[str]:
        """Names of the tenants the books hold now."""
        return list(self._seen)

    def _queue(self, name: str, samples: int) -> None:
        self.queued += samples
        self._queued[name] += samples
        label = self.metrics.tenant_label(name)
        self._queued_by_label[label] += samples  # connections share a label: the gauge is their sum
        self.metrics.queue_depth.set(self.queued)
        self.metrics.tenant_queue.labels(label).set(self._queued_by_label[label])
        if not self._queued_by_label[label]:
            del self._queued_by_label[label]
        self._forget_if_idle(name)

    def _forget_if_idle(self, name: str) -> None:
        if name in self._seen and not self._in_flight[name] and not self._queued[name]:
            del self._seen[name], self._in_flight[name], self._queued[name]
