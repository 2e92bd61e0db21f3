"""Deficit round robin (Shreedhar and Varghese, 1995) over tenants: who sends the next batch to the device.

Each tenant with work waiting gets, in turn, a quantum of ``weight * quantum`` cost units (samples)
added to its deficit, and sends batches while their cost fits in it. Over any stretch in which
tenants stay backlogged, each gets device work in proportion to its weight, whatever the sizes of
its requests; a tenant with a single small request waits at most one turn of the others.
"""

from __future__ import annotations

import collections
from typing import Any


class DeficitRoundRobin:
    def __init__(self, quantum: int):
        if quantum < 1:
            raise ValueError(f"quantum: expected at least 1, got {quantum}")
        self.quantum = quantum
        self._queues: dict[str, collections.deque[tuple[int, Any]]] = {}
        self._weights: dict[str, float] = {}
        self._deficit: dict[str, float] = {}
        self._active: collections.deque[str] = collections.deque()  # tenants with work, in turn order
        self._fresh = True  # the tenant at the front has not been given this turn's quantum yet

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def push(self, tenant: str, weight: float, cost: int, item: Any) -> None:
        queue = self._queues.setdefault(tenant, collections.deque())
        self._weights[tenant] = weight
        if not queue:
            self._active.append(tenant)
            self._deficit[tenant] = 0.0
        queue.append((cost, item))

    def pop(self) -> Any:
        """The next item in fair order; IndexError when nothing waits."""
        while self._active:
            tenant = self._active[0]
            if self._fresh:
                self._deficit[tenant] += self._weights[tenant] * self.quantum
                self._fresh = False
            queue = self._queues[tenant]
            cost, item = queue[0]
            if cost <= self._deficit[tenant]:
                queue.popleft()
                self._deficit[tenant] -= cost
                if not queue:  # an idle tenant keeps no credit
                    self._active.popleft()
                    self._deficit[tenant] = 0.0
                    self._fresh = True
                return item
            self._active.rotate(-1)  # its turn is over; the rest of its deficit waits for the next
            self._fresh = True
        raise IndexError("nothing waits")

    def depth(self, tenant: str) -> int:
        return sum(cost for cost, _ in self._queues.get(tenant, ()))
