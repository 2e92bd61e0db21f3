"""What the server needs to know of a call, read once while the call is live.

A dataset stream's batch tasks (and shared-epoch batches other streams wait on) outlive their call when its
client goes away, and grpc's servicer context must not be read after its call ends: ``peer()`` then reads
a released call and crashed the process. Everything after the handler's first line reads a ``Caller`` instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, eq=False)  # compared by identity: one call's requests are never merged together
class Caller:
    metadata: tuple[tuple[str, str | bytes], ...]
    peer: str
    deadline: float | None  # time.monotonic() seconds; None: the client set none

    @classmethod
    def of(cls, context) -> Caller:
        remaining = context.time_remaining()
        return cls(tuple(context.invocation_metadata() or ()), context.peer(),
                   None if remaining is None else time.monotonic() + remaining)

    def deadline_passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline
