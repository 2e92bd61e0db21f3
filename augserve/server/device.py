"""The device worker: runs merged batches on its one thread, one host-to-device copy in and one out.

A batch is the checked inputs of several jobs run as one pipeline call and split back; each answer
goes straight into its client's shared-memory region where one was offered and has room. A request
that fails (a bad file, a value the pipeline refuses) fails alone: the others run again without it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from dataclasses import replace
from typing import Union

import torch

from augserve.encoded import EncodedBatch
from augserve.pipeline import AugmentOutput, Checked, Prepared
from augserve.server.cpu import ThreadBudget
from augserve.server.errors import DeadlineExpired
from augserve.server.graphs import CudaGraphs
from augserve.server.jobs import Done, Job
from augserve.side_streams import run_beside

log = logging.getLogger("augserve.server")
Result = Union[Done, Exception]


def _into_region(x: torch.Tensor, job: Job) -> tuple[torch.Tensor, bool]:
    """Copy a job's rows into its client's shared-memory output region: the host tensor they came from, and
    whether they went there (a region the client broke meanwhile, truncated or /dev/shm full, only sends
    this answer inline instead)."""
    host = x.cpu().contiguous()
    try:
        job.output.write(memoryview(host.numpy()))
    except OSError as error:
        log.warning("output_shm: could not write region %r (%s); answering inline", job.output.region.name, error)
        return host, False
    return host, True


class DeviceWorker:
    def __init__(self, device: torch.device, max_batch: int, metrics, threads: ThreadBudget | None = None, *,
                 decode_ahead: bool = False, cuda_graphs: bool = False):
        self.device = device
        self.max_batch = max_batch
        self.metrics = metrics
        self.threads = threads or ThreadBudget()
        # With decode_ahead (on an accelerator), encoded requests are decoded (and cropped) as they arrive,
        # while the device runs earlier batches. On the CPU the device is those same cores: overlapping
        # oversubscribed them (service 0.75x of in process instead of 0.86x on the 2-core bench), so there
        # the device thread decodes as part of the batch.
        self.decode_ahead = decode_ahead
        self._exclusive = threading.Lock()  # kept by a CUDA-graph capture: no other thread's work on the device then
        self.graphs = CudaGraphs(device, metrics, exclusive=self._exclusive) if cuda_graphs else None
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="augserve-device")
        self._preparer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="augserve-prepare")

    def prepare_ahead(self, job: Job) -> asyncio.Future | None:
        """Start decoding an encoded job's images now, beside the batch on the device (decode_ahead only)."""
        if not (self.decode_ahead and isinstance(job.batch.x, EncodedBatch)):
            return None
        return asyncio.get_running_loop().run_in_executor(self._preparer, self._prepare, job)

    def _prepare(self, job: Job) -> Prepared:
        """On the prepare thread: decode on the device and run the pipeline's first steps, on a side stream."""
        torch.set_num_threads(self.threads.current)  # the device's share sizes the decode fan-out too
        with self._exclusive:
            return run_beside(self.device, "prepare", lambda: job.pipeline.prepare(
                job.batch.x.to(self.device), seed=job.seed, keys=job.keys))

    async def run(self, jobs: list[Job], inputs: list[Checked]) -> list[Result]:
        """Each job's result (or its failure), run as one batch on the device thread."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._run, jobs, inputs)

    def _run(self, jobs: list[Job], inputs: list[Checked]) -> list[Result]:
        """On the device thread, with as many CPU threads as the budget allows: what expired while waiting
        is dropped, the rest runs as one batch."""
        with self.threads.batch() as threads:
            self.metrics.cpu_threads.set(threads)
            results: list[Result | None] = [DeadlineExpired("deadline passed while queued for the device")
                                            if job.expired() else None for job in jobs]
            live = [i for i, result in enumerate(results) if result is None]
            if live:
                outputs = self._batch([jobs[i] for i in live], [inputs[i] for i in live])
                for i, output in zip(live, outputs):
                    results[i] = output
            return results

    def _batch(self, jobs: list[Job], inputs: list[Checked]) -> list[Result]:
        try:
            return self._augment(jobs, inputs)
        except ValueError as error:
            if len(jobs) == 1:
                return [error]
            return [self._alone(job, batch) for job, batch in zip(jobs, inputs)]  # find the one bad request
        except Exception as error:  # noqa: BLE001 - handed to the callers, who log it and answer INTERNAL
            return [error] * len(jobs)

    def _alone(self, job: Job, batch: Checked) -> Result:
        try:
            return self._augment([job], [batch])[0]
        except Exception as error:  # noqa: BLE001 - returned to its own caller only
            return error

    def _augment(self, jobs: list[Job], inputs: list[Checked]) -> list[Done]:
        sizes = [job.size for job in jobs]
        self.metrics.batch_fill.observe(sum(sizes) / self.max_batch)
        self.metrics.device_batches.inc()
        batch = inputs[0] if len(inputs) == 1 else Checked.concat(inputs)
        batch = batch.to(self.device, non_blocking=True)  # the one host-to-device copy (encoded: decoding there)
        # Keys, seeds and labels stay on the host: checked there, drawn from there (device plan), copied once.
        keys = torch.cat([job.keys for job in jobs])
        labels = None if jobs[0].labels is None else torch.cat([job.labels for job in jobs])
        if len({job.seed for job in jobs}) == 1:
            seed: int | torch.Tensor = jobs[0].seed
        else:
            seed = torch.cat([torch.full((job.size,), job.seed - (1 << 64) if job.seed >= 1 << 63 else job.seed,
                                         dtype=torch.int64) for job in jobs])
        pipeline = batch.pipeline
        if self.graphs is not None and pipeline.plan_for(self.device) == "device":
            call = pipeline.device_call(batch, labels, seed=seed, keys=keys)
            out = AugmentOutput(*self.graphs.run(pipeline, call), call.params, call.lengths)
        else:
            out = pipeline(batch, labels, seed=seed, keys=keys, reports=any(job.reports for job in jobs))
        out = replace(out, labels=None if out.labels is None else out.labels.cpu(),
                      lengths=None if out.lengths is None else out.lengths.cpu())
        # The one device-to-host copy: straight into a same-host client's output region when it has room,
        # the rest of the batch in one piece into host memory.
        into_regions = [job.output is not None and out.x[0].nbytes * job.size <= job.output.nbytes for job in jobs]
        host_x = None if all(into_regions) else out.x if isinstance(out.x, list) else out.x.cpu()  # list: sentences
        results, start = [], 0
        for job, size, shared in zip(jobs, sizes, into_regions):
            stop = start + size
            part = out.rows(start, stop)
            x, in_region = _into_region(part.x, job) if shared else (host_x[start:stop], False)
            results.append(Done(replace(part, x=x), in_region))
            start = stop
        return results

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        self._preparer.shutdown(wait=True)
