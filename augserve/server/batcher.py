"""Dynamic batching onto one device worker.

Requests that share a pipeline, sample shape, dtype, labels layout and output
dtype are merged up to ``max_batch`` samples or ``max_delay_ms``, run as one
batch (one host-to-device copy in, one out) and split back. Every sample keeps
its own (seed, key) stream, so a merged sample is bit-identical to the same
request run alone. Pipelines that mix samples (mixup, cutmix) are never merged:
partners must come from the same request.

Requests of one call (the batches a client keeps in flight on one stream) are
never merged with each other: the client already chose its batch size, and one
device batch of its whole window would answer nothing until all of it is done,
leaving the device idle while the client turns around (lock-step). When a
call's next request arrives, what is pending from that call goes to the device
at once; other calls' requests still merge with it.

Tenants share the device fairly: requests merge within their tenant as above,
and the batch that runs next is picked by deficit round robin over the tenants
with batches waiting (``fair.py``), so a small job is served before a greedy
neighbour's backlog drains, and backlogged tenants get device samples in
proportion to their weights. Other tenants' waiting batches of the same kind
join the chosen one while it has room, paid from their own turns. Each tenant
has its own queue and in-flight limits (``ledger.py``); the device thread is ``device.py``'s.
"""

from __future__ import annotations

import asyncio
import time

import torch

from augserve.server.cpu import ThreadBudget
from augserve.server.device import DeviceWorker, Result
from augserve.server.errors import DeadlineExpired
from augserve.server.fair import DeficitRoundRobin
from augserve.server.jobs import Done, Job
from augserve.server.ledger import Ledger

# Samples a tenant of weight 1 may send per turn of deficit round robin: about one client batch,
# whatever --max-batch lets requests merge into. A turn of max_batch samples (256 by default) let a
# greedy tenant send four 64-image batches back to back while a small job waited (2.7x one of them).
TURN_SAMPLES = 64


class Batcher:
    def __init__(self, device: torch.device, max_batch: int, max_delay_ms: float, max_queue: int, metrics,
                 threads: ThreadBudget | None = None, *, decode_ahead: bool = False, cuda_graphs: bool = False):
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1000.0
        self.metrics = metrics
        self.ledger = Ledger(max_queue, metrics)
        self.device = DeviceWorker(device, max_batch, metrics, threads, decode_ahead=decode_ahead,
                                   cuda_graphs=cuda_graphs)
        self._fair = DeficitRoundRobin(min(max_batch, TURN_SAMPLES))
        self._running: asyncio.Task | None = None  # the one batch on its way to or on the device
        self._pending: dict[tuple, list[Job]] = {}
        self._timers: dict[tuple, asyncio.TimerHandle] = {}
        self._inflight: set[asyncio.Task] = set()

    async def submit(self, job: Job) -> Done:
        """Admit the job or refuse at once (QueueFull); then wait for its share of a device batch."""
        self.ledger.admit(job.tenant, job.size)
        job.future, job.admitted = asyncio.get_running_loop().create_future(), time.monotonic()
        job.prepared = self.device.prepare_ahead(job)
        try:
            self._enqueue(job)
            return await job.future
        except asyncio.CancelledError:
            self.cancel(job)
            raise
        finally:
            self.ledger.answered(job.tenant)

    def cancel(self, job: Job) -> None:
        """Free a cancelled job's slots now if it has not reached the device."""
        if job.cancelled or job.future is None or job.future.done():
            return
        job.cancelled = True
        if job.prepared is not None:
            job.prepared.cancel()
        bucket = self._pending.get(self._bucket(job))
        if bucket is not None and job in bucket:
            bucket.remove(job)
            self.ledger.dequeued(job.tenant, job.size)

    @staticmethod
    def _bucket(job: Job) -> tuple:
        return job.tenant.name, job.merge_key

    def _enqueue(self, job: Job) -> None:
        if job.merge_key is None:
            self._start([job])
            return
        key = self._bucket(job)
        if any(queued.origin is job.origin for queued in self._pending.get(key, ())):
            self._flush(key)  # the caller's next batch is here: its last one waits no longer
        bucket = self._pending.setdefault(key, [])
        bucket.append(job)
        if sum(j.size for j in bucket) >= self.max_batch:
            self._flush(key)
        elif key not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(self.max_delay, self._flush, key)

    def _flush(self, key: tuple) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        group: list[Job] = []
        for job in self._pending.pop(key, []):
            if group and sum(j.size for j in group) + job.size > self.max_batch:
                self._start(group)
                group = []
            group.append(job)
        if group:
            self._start(group)

    def _start(self, jobs: list[Job]) -> None:
        """A batch ready for the device: it waits its tenant's turn."""
        tenant = jobs[0].tenant
        self._fair.push(tenant.name, tenant.weight, sum(job.size for job in jobs), jobs)
        self._next()

    def _next(self, finished: asyncio.Task | None = None) -> None:
        """Send the next batch in fair order once the one before has run (one at a time: what waits can
        still be overtaken by a tenant whose turn comes first)."""
        if finished is not None and finished is self._running:
            self._running = None
        if self._running is not None or not len(self._fair):
            return
        jobs = self._fair.pop()
        key, room = jobs[0].merge_key, self.max_batch - sum(job.size for job in jobs)
        if key is not None and room > 0:  # other tenants' batches of the same kind ride along, paid from their turns

            def fits(cost: int, group: list[Job]) -> bool:
                nonlocal room
                if group[0].merge_key != key or cost > room:
                    return False
                room -= cost
                return True

            jobs = jobs + [job for group in self._fair.pop_alongside(fits, jobs[0].tenant.name) for job in group]
        task = asyncio.get_running_loop().create_task(self._dispatch(jobs))
        self._running = task
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        task.add_done_callback(self._next)

    async def _dispatch(self, jobs: list[Job]) -> None:
        """The jobs still wanted, with their decoded-ahead images, to the device; each caller gets its result."""
        live, inputs = [], []
        now = time.monotonic()
        for job in jobs:
            self.metrics.tenant_wait.labels(self.metrics.tenant_label(job.tenant.name)).observe(now - job.admitted)
            if job.cancelled:
                self.ledger.dequeued(job.tenant, job.size)
            elif job.expired():
                self._finish(job, DeadlineExpired("deadline passed before the batch reached the device"))
            elif job.prepared is None:
                live.append(job)
                inputs.append(job.batch)
            else:
                try:
                    inputs.append(job.batch.with_input(await job.prepared))
                    live.append(job)
                except Exception as error:  # noqa: BLE001 - a file that does not decode fails its own request only
                    self._finish(job, error)
        if live:
            for job, result in zip(live, await self.device.run(live, inputs)):
                self._finish(job, result)

    def _finish(self, job: Job, result: Result) -> None:
        self.ledger.dequeued(job.tenant, job.size)
        if job.future.done():
            return
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    async def close(self) -> None:
        for key in list(self._pending):
            self._flush(key)
        while self._inflight or len(self._fair):  # every batch waiting its turn runs too
            await asyncio.gather(*self._inflight, return_exceptions=True)
            await asyncio.sleep(0)  # the finished batch's callback starts the next
        self.device.close()
