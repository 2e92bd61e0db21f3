"""The no-progress bound of the blocking client's streams.

Keepalive finds a replica that is cut off or frozen; it cannot find one that is alive on the network
but stuck (its pings answered, its device not). A stream that gets no answer for the client's
``timeout`` while one is awaited is cancelled here and treated as lost: it fails over like a dropped one.
Time the caller spends with a batch (between answers it asked for) does not count.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

CHECKS_PER_BOUND = 4


class StallWatch:
    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.stalled = False
        self._cancel: Callable[[], object] | None = None
        self._since: float | None = None  # when the wait for the next answer began; None: not waiting
        self._closed = threading.Event()
        self._lock = threading.Lock()
        if seconds is not None:
            threading.Thread(target=self._watch, name="augserve-stall-watch", daemon=True).start()

    def watch(self, cancel: Callable[[], object]) -> None:
        """A new call (after a failover) whose answers are now awaited; ``cancel`` ends it."""
        with self._lock:
            self._cancel, self.stalled, self._since = cancel, False, time.monotonic()

    def answered(self) -> None:
        """An answer came and goes to the caller: no wait until ``waiting`` again."""
        with self._lock:
            self._since = None

    def waiting(self) -> None:
        with self._lock:
            self._since = time.monotonic()

    def close(self) -> None:
        self._closed.set()

    def _watch(self) -> None:
        while not self._closed.wait(self.seconds / CHECKS_PER_BOUND):
            with self._lock:
                if self._since is None or self._cancel is None or time.monotonic() - self._since < self.seconds:
                    continue
                self.stalled, self._since, cancel = True, None, self._cancel
            cancel()
