"""A client, or ``augserve health --wait``, started before its server waits for it (gRPC's wait_for_ready),
bounded by its timeout; ``wait_ready`` says when a server is SERVING; a stream with one target to go back to
does not speak of other replicas."""

import asyncio
import logging
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from augserve.client import AsyncClient, Client, Unavailable
from augserve.client.settings import ClientSettings
from server_harness import RunningServer, ServerProcess, free_port

SPEC = [{"op": "hflip", "p": 1.0}]


def _in_thread(call) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except Exception as error:  # reported by the test's assertions
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_clients_and_health_started_before_their_server_wait_for_it():
    port = free_port()
    target = f"127.0.0.1:{port}"
    x = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    # retries=1: without waiting, a call to a port nobody listens on fails within a second
    client = Client(target, timeout=60, retries=1)

    async def wait_async():
        async with AsyncClient(target, timeout=60, retries=1) as late:
            info = await late.wait_ready(60)
            return info, [b.x async for b in late.map(_aiter([x]), pipeline=SPEC)]

    waiters = {"augment": _in_thread(lambda: client.augment(x, pipeline=SPEC)),
               "async wait_ready": _in_thread(lambda: asyncio.run(wait_async()))}
    health = subprocess.Popen([sys.executable, "-m", "augserve.cli", "health", "--target", target, "--wait", "60"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = None
    try:
        for name, (thread, outcome) in waiters.items():
            thread.join(timeout=3)
            assert thread.is_alive(), f"{name} did not wait for the server: {outcome}"
        assert health.poll() is None, f"health --wait gave up before the server started: {health.communicate()}"
        server = ServerProcess(port=port)
        for name, (thread, outcome) in waiters.items():
            thread.join(timeout=90)
            assert "error" not in outcome, f"{name}: {outcome['error']!r}"
        assert np.array_equal(waiters["augment"][1]["value"].x, x[..., ::-1])
        info, streamed = waiters["async wait_ready"][1]["value"]
        assert info["version"] and np.array_equal(streamed[0], x[..., ::-1])
        out, err = health.communicate(timeout=60)
        assert health.returncode == 0 and "SERVING" in out, err
        assert client.wait_ready(5)["device"]  # SERVING now: at once
    finally:
        client.close()
        if health.poll() is None:
            health.kill()
        if server is not None:
            server.stop()


def test_wait_ready_and_a_first_call_raise_after_their_timeout_naming_the_target():
    target = f"127.0.0.1:{free_port()}"
    with Client(target, timeout=1) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable, match=rf"no server reported SERVING within 1 s.*\[{target}\]"):
            client.wait_ready(1)
        assert 1 <= time.monotonic() - started < 10
        with pytest.raises(Unavailable, match="within 1 s"):  # the call's wait is its timeout
            client.server_info()

    async def run():
        async with AsyncClient(target, timeout=30) as client:
            with pytest.raises(Unavailable, match=rf"within 0.5 s.*\[{target}\]"):
                await client.wait_ready(0.5)
            with pytest.raises(Unavailable, match="within 1 s"):
                await client.augment(np.zeros((1, 1, 2, 2), np.uint8), pipeline=SPEC, timeout=1)

    asyncio.run(run())


def test_wait_for_ready_false_fails_fast_and_odd_values_are_refused():
    with Client(f"127.0.0.1:{free_port()}", timeout=30, retries=0, wait_for_ready=False) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            client.server_info()
        assert time.monotonic() - started < 10  # not the 30 s a waiting call would take
    with pytest.raises(ValueError, match="wait_for_ready"):
        Client("127.0.0.1:1", wait_for_ready="yes")
    assert ClientSettings("127.0.0.1:1", wait_for_ready=True).call_options()["wait_for_ready"] is True
    assert ClientSettings("127.0.0.1:1").call_options()["wait_for_ready"] is False  # after the first call: fail fast


def test_wait_for_ready_true_on_every_kind_of_call():
    server = RunningServer()
    x = np.zeros((2, 3, 8, 8), np.uint8)
    try:
        with Client(server.target, wait_for_ready=True) as client:
            assert client.augment(x, pipeline=SPEC).x.shape == x.shape
            assert len(list(client.map([x, x], pipeline=SPEC))) == 2
            assert next(iter(client.stream_dataset("digits", SPEC, 16))).x.shape[0] == 16

        async def run():
            async with AsyncClient(server.target, wait_for_ready=True) as client:
                assert (await client.augment(x, pipeline=SPEC)).x.shape == x.shape
                assert len([b async for b in client.map(_aiter([x, x]), pipeline=SPEC)]) == 2
                return [b async for b in client.stream_dataset("digits", SPEC, 600)]

        assert len(asyncio.run(run())) == 3  # the 1797 digits in batches of 600
    finally:
        server.stop()


def test_health_wait_gives_up_after_its_seconds_and_help_shows_defaults():
    started = time.monotonic()
    down = subprocess.run([sys.executable, "-m", "augserve.cli", "health", "--target", f"127.0.0.1:{free_port()}",
                           "--wait", "1"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr and "after waiting 1 s" in down.stderr
    assert time.monotonic() - started >= 1
    usage = subprocess.run([sys.executable, "-m", "augserve.cli", "health", "--help"], capture_output=True, text=True,
                           timeout=60)
    assert "--wait SECONDS" in " ".join(usage.stdout.split()) and "(default: 0.0: ask once)" in usage.stdout


def test_a_stream_with_one_target_reconnects_to_it_and_does_not_speak_of_other_replicas(caplog):
    target = f"127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="augserve.client"):
        with Client(target, retries=0, failovers=2, wait_for_ready=False, shared_memory=False) as client:
            with pytest.raises(Unavailable):
                list(client.map([np.zeros((1, 1, 2, 2), np.uint8)], pipeline=SPEC))
    messages = [record.getMessage() for record in caplog.records]
    assert [m for m in messages if f"reconnecting to {target}" in m and "(attempt 1 of 2)" in m], messages
    assert not [m for m in messages if "another replica" in m], messages


def test_several_targets_still_fail_over_to_another_replica(caplog):
    class Dropped(Exception):
        def code(self):
            import grpc
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "connection reset"

    for targets in (["127.0.0.1:1", "127.0.0.1:2"], "dns:///augserve-headless:50051"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="augserve.client"):
            ClientSettings(targets, shared_memory=False).failover_delay(Dropped(), 0)
        assert "resuming on another replica" in caplog.records[-1].getMessage() and "failover 1 of 3" in \
            caplog.records[-1].getMessage()


async def _aiter(items):
    for item in items:
        yield item
