"""A replica alive on the network but stuck (its pings answered, its device not) must not hang a trainer: a
stream with no answer for the client's ``timeout`` while one is awaited fails over, and out of replicas ends
with DeadlineExceeded naming the bound. Time the caller spends with a batch does not count."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from augserve.client import AsyncClient, Client, DeadlineExceeded
from server_harness import RunningServer


@pytest.fixture
def stuck():
    """A server whose device never finishes a batch (until the test ends)."""
    server = RunningServer(max_delay_ms=1.0)
    release = threading.Event()
    device = server.server.batcher.device
    original = device._augment

    def never(jobs, inputs):
        release.wait(120)
        return original(jobs, inputs)

    device._augment = never
    yield server
    release.set()
    server.stop()


def batches(count: int = 4):
    return [np.zeros((2, 3, 16, 16), np.uint8) for _ in range(count)]


def _bounded(call, seconds: float):
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="no answer for 1 s on the stream"):
        call()
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"gave up after {elapsed:.1f} s"


def test_map_on_a_stuck_replica_ends_with_a_clear_error(stuck):
    client = Client(stuck.target, timeout=1, failovers=1, shared_memory=False)
    _bounded(lambda: list(client.map(batches(), pipeline="rand-m9-n2")), 20)  # 2 tries of 1 s, plus start-up


def test_stream_dataset_on_a_stuck_replica_ends_with_a_clear_error(stuck):
    client = Client(stuck.target, timeout=1, failovers=1, shared_memory=False)
    _bounded(lambda: list(client.stream_dataset("digits", "rand-m9-n2", 64)), 20)


def test_the_async_client_has_the_same_bound(stuck):
    async def run():
        async with AsyncClient(stuck.target, timeout=1, failovers=1, shared_memory=False) as client:
            return [b async for b in client.map(_aiter(batches()), pipeline="rand-m9-n2")]

    _bounded(lambda: asyncio.run(run()), 20)


async def _aiter(items):
    for item in items:
        yield item


def test_a_slow_training_step_is_not_a_stall():
    """The caller holding each batch for longer than the timeout is no stall: nothing fails over."""
    server = RunningServer()
    try:
        client = Client(server.target, timeout=2, failovers=0, shared_memory=False)
        got = 0
        for _ in client.map(batches(3), pipeline="rand-m9-n2", prefetch=1):
            time.sleep(2.6)
            got += 1
        for _ in client.stream_dataset("digits", "rand-m9-n2", 900):
            time.sleep(2.6)
            got += 1
        assert got == 5
    finally:
        server.stop()
