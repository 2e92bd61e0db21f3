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
        self._debt: dict[str, float] = {}  # what a tenant that went idle still owes for work run alongside others
        self._active: collections.deque[str] = collections.deque()  # tenants with work, in turn order
        self._fresh = True  # the tenant at the front has not been given this turn's quantum yet

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def push(self, tenant: str, weight: float, cost: int, item: Any) -> None:
        queue = self._queues.setdefault(tenant, collections.deque())
        self._weights[tenant] = weight
        if not queue:
            self._active.append(tenant)
            self._deficit[tenant] = self._debt.pop(tenant, 0.0)
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
                if not queue:
                    self._active.popleft()
                    self._idle(tenant)
                    self._fresh = True
                return item
            self._active.rotate(-1)  # its turn is over; the rest of its deficit waits for the next
            self._fresh = True
        raise IndexError("nothing waits")

    def pop_alongside(self, fits, besides: str) -> list[Any]:
        """Items at the head of the queues of tenants other than ``besides`` for which ``fits(cost, item)``
        holds, to run in the same device batch as the one just popped. Each tenant pays from its deficit,
        borrowing at most its next quantum, so it gets that much less on its next turn and the shares over
        time stay those of the weights."""
        taken = []
        for tenant in [t for t in self._active if t != besides]:
            queue, limit = self._queues[tenant], self._deficit[tenant] + self._weights[tenant] * self.quantum
            while queue and queue[0][0] <= limit and fits(*queue[0]):
                limit -= queue[0][0]
                cost, item = queue.popleft()
                self._deficit[tenant] -= cost
                taken.append(item)
            if not queue:
                if self._active[0] == tenant:
                    self._fresh = True
                self._active.remove(tenant)
                self._idle(tenant)
        return taken

    def _idle(self, tenant: str) -> None:
        """A tenant with nothing waiting keeps its debt, not its credit, and no other state (tenants come
        and go with connections)."""
        deficit = self._deficit.pop(tenant)
        del self._queues[tenant], self._weights[tenant]
        if deficit < 0:
            self._debt[tenant] = deficit

    def depth(self, tenant: str) -> int:
        return sum(cost for cost, _ in self._queues.get(tenant, ()))
