"""A job: one admitted request's work, and what the device hands back for it.

A job's fields keep their types for its whole life: the checked batch stays what the request sent
(decoded-ahead images come back beside it, in ``prepared``), and whether the answer went into the
client's region comes back in ``Done`` rather than being written onto the job by the device thread.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import torch

from augserve.pipeline import AugmentOutput, Checked, Pipeline
from augserve.server.tenants import Tenant
from augserve.shared_memory import Span


@dataclass(eq=False)
class Job:
    batch: Checked  # the request's samples, as its pipeline accepted them
    merge_key: tuple | None  # None: run alone
    origin: object  # the call it came on (its Caller), by identity: one call's requests are never merged together
    labels: torch.Tensor | None  # soft (B, K) float32, already validated
    keys: torch.Tensor
    seed: int
    deadline: float | None  # time.monotonic() seconds
    output: Span | None = None  # a same-host client's output region: the result is copied straight in
    tenant: Tenant = field(default_factory=lambda: Tenant("local"))
    reports: bool = True  # the caller reads what text steps changed (return_params): see ``Pipeline.__call__``
    # set on the event loop as the job moves through the batcher
    future: asyncio.Future | None = None
    prepared: asyncio.Future | None = None  # encoded images: decoding and first steps, started on admission
    cancelled: bool = False
    admitted: float = 0.0  # time.monotonic() at admission

    @property
    def pipeline(self) -> Pipeline:
        return self.batch.pipeline

    @property
    def size(self) -> int:
        return len(self.batch)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass(frozen=True)
class Done:
    """A job's result: the pipeline's output, and whether ``output.x`` is already in the client's region."""

    output: AugmentOutput
    in_region: bool = False
