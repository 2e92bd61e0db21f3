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
has its own queue and in-flight limits.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from augserve.encoded import EncodedBatch
from augserve.pipeline import AugmentOutput, Pipeline, Prepared
from augserve.server.cpu import ThreadBudget
from augserve.server.fair import DeficitRoundRobin
from augserve.server.tenants import Tenant
from augserve.shared_memory import Span
from augserve.side_streams import run_beside
from augserve.steps.base import rows

log = logging.getLogger("augserve.server")

# Samples a tenant of weight 1 may send per turn of deficit round robin: about one client batch,
# whatever --max-batch lets requests merge into. A turn of max_batch samples (256 by default) let a
# greedy tenant send four 64-image batches back to back while a small job waited (2.7x one of them).
TURN_SAMPLES = 64


class QueueFull(Exception):
    """Admission refused: the queue holds its limit of samples."""


class DeadlineExpired(Exception):
    """The caller's deadline passed before the work reached the device."""


@dataclass(eq=False)
class Job:
    pipeline: Pipeline
    merge_key: tuple | None  # None: run alone
    origin: object  # the call the request came on: one call's requests are never merged together
    x: torch.Tensor | EncodedBatch | Prepared
    labels: torch.Tensor | None  # soft (B, K) float32, already validated
    keys: torch.Tensor
    seed: int
    out_dtype: torch.dtype | None
    deadline: float | None  # time.monotonic() seconds
    future: asyncio.Future = field(default=None)
    cancelled: bool = False
    output: Span | None = None  # a same-host client's output region: the result is copied straight in
    output_written: bool = False  # set by the device thread when the result went there
    prepared: asyncio.Future | None = None  # encoded images: decoding and first steps, started on admission
    tenant: Tenant = field(default_factory=lambda: Tenant("local"))
    admitted: float = 0.0  # time.monotonic() at admission

    @property
    def size(self) -> int:
        return len(self.x)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def _into_region(x: torch.Tensor, job: Job) -> torch.Tensor:
    """Copy a job's rows into its client's shared-memory output region; the host tensor they came from.

    A region the client broke meanwhile (truncated, /dev/shm full) only sends this answer inline instead.
    """
    host = x.cpu().contiguous()
    try:
        job.output.write(memoryview(host.numpy()))
    except OSError as error:
        log.warning("output_shm: could not write region %r (%s); answering inline", job.output.region.name, error)
        return host
    job.output_written = True
    return host


def _concat(inputs: list) -> torch.Tensor | EncodedBatch | Prepared:
    """Merged requests' inputs as one batch (dense tensors, encoded or prepared images: never mixed)."""
    return torch.cat(inputs) if isinstance(inputs[0], torch.Tensor) else type(inputs[0]).concat(inputs)


class Batcher:
    def __init__(self, device: torch.device, max_batch: int, max_delay_ms: float, max_queue: int, metrics,
                 threads: ThreadBudget | None = None, *, decode_ahead: bool = False):
        self.device = device
        self.threads = threads or ThreadBudget()
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1000.0
        self.max_queue = max_queue
        self.metrics = metrics
        self.queued = 0
        self.tenant_queued: collections.Counter[str] = collections.Counter()  # samples waiting, per tenant
        self.tenant_in_flight: collections.Counter[str] = collections.Counter()  # requests unanswered, per tenant
        self.tenants_seen: dict[str, Tenant] = {}
        self._queued_by_label: collections.Counter[str] = collections.Counter()
        self._fair = DeficitRoundRobin(min(max_batch, TURN_SAMPLES))
        self._running: asyncio.Task | None = None  # the one batch on its way to or on the device
        self._pending: dict[tuple, list[Job]] = {}
        self._timers: dict[tuple, asyncio.TimerHandle] = {}
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="augserve-device")
        # With decode_ahead (on an accelerator), encoded requests are decoded (and cropped) here as they arrive,
        # while the device runs earlier batches. On the CPU the device is those same cores: overlapping
        # oversubscribed them (service 0.75x of in process instead of 0.86x on the 2-core bench), so there
        # the device thread decodes as part of the batch.
        self.decode_ahead = decode_ahead
        self._preparer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="augserve-prepare")
        self._inflight: set[asyncio.Task] = set()

    async def submit(self, job: Job) -> AugmentOutput:
        """Admit the job or refuse at once; then wait for its share of a device batch."""
        tenant = job.tenant
        if self.queued + job.size > self.max_queue:
            raise QueueFull(f"queue full: {self.queued} samples queued, limit {self.max_queue}; retry later")
        if self.tenant_queued[tenant.name] + job.size > tenant.max_queue:
            raise QueueFull(f"tenant {tenant.name!r}: queue full: {self.tenant_queued[tenant.name]} samples queued, "
                            f"its limit {tenant.max_queue}; retry later")
        if self.tenant_in_flight[tenant.name] >= tenant.max_in_flight:
            raise QueueFull(f"tenant {tenant.name!r}: {tenant.max_in_flight} requests in flight, its limit; "
                            "retry later")
        loop = asyncio.get_running_loop()
        job.future, job.admitted = loop.create_future(), time.monotonic()
        self.tenants_seen[tenant.name] = tenant
        self.tenant_in_flight[tenant.name] += 1
        self._admit(job.size, tenant.name)
        if isinstance(job.x, EncodedBatch) and self.decode_ahead:
            job.prepared = loop.run_in_executor(self._preparer, self._prepare, job)
        try:
            self._enqueue(job)
            return await job.future
        except asyncio.CancelledError:
            self.cancel(job)
            raise
        finally:
            self._answered(tenant)

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
            self._admit(-job.size, job.tenant.name)

    def _prepare(self, job: Job) -> Prepared:
        """On the prepare thread: decode the job's images on the device and run the pipeline's first steps,
        on a stream beside the batch the device thread runs."""
        torch.set_num_threads(self.threads.current)  # the device's share sizes the decode fan-out too
        return run_beside(self.device, "prepare", lambda: job.pipeline.prepare(
            job.x.to(self.device), seed=job.seed, keys=job.keys.to(self.device)))

    def _admit(self, samples: int, tenant: str) -> None:
        self.queued += samples
        self.tenant_queued[tenant] += samples
        label = self.metrics.tenant_label(tenant)
        self._queued_by_label[label] += samples  # connections share a label: the gauge is their sum
        self.metrics.queue_depth.set(self.queued)
        self.metrics.tenant_queue.labels(label).set(self._queued_by_label[label])
        self._forget_if_idle(tenant)

    def _answered(self, tenant: Tenant) -> None:
        self.tenant_in_flight[tenant.name] -= 1
        self._forget_if_idle(tenant.name)

    def _forget_if_idle(self, name: str) -> None:
        """A tenant by connection with nothing queued or in flight is dropped: connections come and go."""
        tenant = self.tenants_seen.get(name)
        if tenant is not None and tenant.source == "connection" and not self.tenant_in_flight[name] \
                and not self.tenant_queued[name]:
            del self.tenants_seen[name], self.tenant_in_flight[name], self.tenant_queued[name]

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
        live = []
        now = time.monotonic()
        for job in jobs:
            self.metrics.tenant_wait.labels(self.metrics.tenant_label(job.tenant.name)).observe(now - job.admitted)
            if job.cancelled:
                self._admit(-job.size, job.tenant.name)
                continue
            if job.expired():
                self._finish(job, DeadlineExpired("deadline passed before the batch reached the device"))
            else:
                live.append(job)
        for job in [j for j in live if j.prepared is not None]:
            try:
                job.x = await job.prepared
            except Exception as error:  # noqa: BLE001 - a file that does not decode fails its own request only
                live.remove(job)
                self._finish(job, error)
        if not live:
            return
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._worker, self._run, live)
        for job, result in zip(live, results):
            self._finish(job, result)

    def _finish(self, job: Job, result: Any) -> None:
        self._admit(-job.size, job.tenant.name)
        if job.future.done():
            return
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    def _run(self, jobs: list[Job]) -> list[Any]:
        """On the device thread, with as many CPU threads as the budget allows."""
        with self.threads.batch() as threads:
            self.metrics.cpu_threads.set(threads)
            return self._run_live(jobs)

    def _run_live(self, jobs: list[Job]) -> list[Any]:
        """Drop what expired while waiting, then one batch for the rest."""
        results: list[Any] = [DeadlineExpired("deadline passed while queued for the device") if j.expired()
                              else None for j in jobs]
        live = [j for j, r in zip(jobs, results) if r is None]
        if live:
            try:
                outputs = self._augment(live)
            except ValueError as error:
                # one bad request must not fail the others: run each alone to find it
                outputs = [error] if len(live) == 1 else [self._augment_one(job) for job in live]
            except Exception as error:  # noqa: BLE001 - handed to the callers, who log it and answer INTERNAL
                outputs = [error] * len(live)
            for job, output in zip(live, outputs):
                results[jobs.index(job)] = output
        return results

    def _augment_one(self, job: Job) -> Any:
        try:
            return self._augment([job])[0]
        except Exception as error:  # noqa: BLE001 - returned to its own caller only
            return error

    def _augment(self, jobs: list[Job]) -> list[AugmentOutput]:
        sizes = [job.size for job in jobs]
        batch = sum(sizes)
        self.metrics.batch_fill.observe(batch / self.max_batch)
        self.metrics.device_batches.inc()
        x = jobs[0].x if len(jobs) == 1 else _concat([job.x for job in jobs])
        x = x.to(self.device, non_blocking=True)  # the one host-to-device copy (encoded: decoding there)
        keys = torch.cat([job.keys for job in jobs]).to(self.device)
        labels = None if jobs[0].labels is None else torch.cat([job.labels for job in jobs]).to(self.device)
        if len({job.seed for job in jobs}) == 1:
            seed: int | torch.Tensor = jobs[0].seed
        else:
            seed = torch.cat([torch.full((job.size,), job.seed - (1 << 64) if job.seed >= 1 << 63 else job.seed,
                                         dtype=torch.int64) for job in jobs]).to(self.device)
        out = jobs[0].pipeline(x, labels, seed=seed, keys=keys, out_dtype=jobs[0].out_dtype)
        host_labels = None if out.labels is None else out.labels.cpu()
        # The one device-to-host copy: straight into a same-host client's output region when it has room,
        # the rest of the batch in one piece into host memory.
        into_regions = [job.output is not None and out.x[0].nbytes * job.size <= job.output.nbytes for job in jobs]
        host_x = None if all(into_regions) else out.x.cpu()
        results, start = [], 0
        for job, size, shared in zip(jobs, sizes, into_regions):
            stop = start + size
            x = _into_region(out.x[start:stop], job) if shared else host_x[start:stop]
            results.append(AugmentOutput(x, None if host_labels is None else host_labels[start:stop],
                                         [rows(step, start, stop) for step in out.params]))
            start = stop
        return results

    async def close(self) -> None:
        for key in list(self._pending):
            self._flush(key)
        while self._inflight or len(self._fair):  # every batch waiting its turn runs too
            await asyncio.gather(*self._inflight, return_exceptions=True)
            await asyncio.sleep(0)  # the finished batch's callback starts the next
        self._worker.shutdown(wait=True)
        self._preparer.shutdown(wait=True)
