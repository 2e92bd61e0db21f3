"""Shared epochs: streams of the same served epoch get each batch computed once, bit-identical to a stream
alone; a different identity never shares; the window's bytes stay bounded; a stream that leaves mid-epoch
costs the others nothing; a stream that falls behind the window is served by recomputation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from augserve.client import Client
from server_harness import RunningServer

SPEC, BATCH, BATCHES = "rand-m9-n2", 64, 29  # digits: 1,797 samples


def _epoch(target: str, seed: int = 3, stop_after: int | None = None) -> list[tuple[int, bytes, list[int]]]:
    got = []
    with Client(target, shared_memory=False) as client:
        for batch in client.stream_dataset("digits", SPEC, BATCH, seed=seed, epoch=1):
            got.append((batch.batch_index, np.ascontiguousarray(batch.x).tobytes(), batch.indices.tolist()))
            if stop_after is not None and len(got) == stop_after:
                break
    return got


def _counts(server) -> dict[str, float]:
    registry = server.server.metrics.registry
    return {outcome: registry.get_sample_value("augserve_shared_batches_total", {"outcome": outcome}) or 0.0
            for outcome in ("computed", "shared")}


def _together(target: str, *runs) -> list:
    results = [None] * len(runs)

    def run(index, kwargs):
        results[index] = _epoch(target, **kwargs)

    threads = [threading.Thread(target=run, args=(i, kwargs)) for i, kwargs in enumerate(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


@pytest.fixture(scope="module")
def alone():
    """The epoch from a server that shares nothing."""
    server = RunningServer(shared_epoch_bytes=0)
    try:
        yield _epoch(server.target)
    finally:
        server.stop()


@pytest.fixture
def server():
    running = RunningServer()
    yield running
    running.stop()


def test_streams_of_the_same_epoch_share_its_batches_and_get_what_a_stream_alone_gets(server, alone):
    before = _counts(server)
    first, second = _together(server.target, {}, {})
    assert first == second == alone
    after = _counts(server)
    computed, shared = after["computed"] - before["computed"], after["shared"] - before["shared"]
    assert computed + shared == 2 * BATCHES and shared > 0
    late = _epoch(server.target)  # within the window: nothing computed again
    assert late == alone and _counts(server)["computed"] == after["computed"]


def test_a_different_identity_never_shares(server, alone):
    before = _counts(server)
    same, other = _together(server.target, {}, {"seed": 4})
    assert same == alone and other != alone
    assert [b[2] for b in other] != [b[2] for b in alone]  # another seed, another shuffle
    assert _counts(server)["shared"] == before["shared"]


def test_a_stream_that_leaves_mid_epoch_costs_the_others_nothing(server, alone):
    leaving, staying = _together(server.target, {"stop_after": 3}, {})
    assert leaving == alone[:3] and staying == alone


def test_the_window_is_bounded_and_a_stream_behind_it_gets_its_batches_computed_again(alone):
    one_batch = 64 * 64 + 64 * 10 * 4 + 4096  # x (uint8 8x8), soft labels, slack
    server = RunningServer(shared_epoch_bytes=2 * one_batch)
    try:
        registry = server.server.metrics.registry
        assert _epoch(server.target) == alone
        assert registry.get_sample_value("augserve_shared_window_bytes") <= 2 * one_batch
        before = _counts(server)
        assert _epoch(server.target) == alone  # the window held the last batches only
        after = _counts(server)
        assert after["computed"] - before["computed"] >= BATCHES - 2
    finally:
        server.stop()


def test_streams_into_a_clients_own_regions_do_not_share(server, alone):
    before = _counts(server)
    with Client(server.target, shared_memory=True) as client:
        batches = [np.array(b.x) for b in client.stream_dataset("digits", SPEC, BATCH, seed=3, epoch=1)]
    assert [x.tobytes() for x in batches] == [b[1] for b in alone]
    assert _counts(server)["shared"] == before["shared"]


def test_a_job_that_starts_mid_epoch_gets_what_a_job_alone_gets(server, alone):
    """The second job starts once the first has 10 batches: it gets those from the window, then shares or
    computes the rest, and both epochs equal a stream alone."""
    first_batches, results = threading.Event(), {}

    def first():
        got = []
        with Client(server.target, shared_memory=False) as client:
            for batch in client.stream_dataset("digits", SPEC, BATCH, seed=3, epoch=1):
                got.append((batch.batch_index, np.ascontiguousarray(batch.x).tobytes(), batch.indices.tolist()))
                if len(got) == 10:
                    first_batches.set()
        results["first"] = got

    thread = threading.Thread(target=first)
    thread.start()
    assert first_batches.wait(timeout=300)
    before = _counts(server)
    results["late"] = _epoch(server.target)
    thread.join(timeout=300)
    assert results["first"] == results["late"] == alone
    assert _counts(server)["shared"] - before["shared"] >= 10  # at least what the first had already received


VARIANTS = {"seed": {"seed": 4}, "pipeline": {"spec": "rand-m7-n2"}, "strength": {"strength": 0.5},
            "epoch": {"epoch": 2}, "batch size": {"batch_size": 32}, "out_dtype": {"out_dtype": "float16"},
            "shard": {"num_shards": 2, "shard_index": 1}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_streams_differing_in_any_part_of_the_identity_never_share(variant):
    """Streamed together with the default stream, a stream that differs in one field gets exactly what it gets
    from a server that shares nothing, and nothing is shared between the two."""
    options = {"spec": SPEC, "seed": 3, "epoch": 1, "batch_size": BATCH, **VARIANTS[variant]}

    def epoch(target, spec, batch_size, **stream):
        with Client(target, shared_memory=False) as client:
            return [(b.batch_index, np.ascontiguousarray(b.x).tobytes(), b.indices.tolist())
                    for b in client.stream_dataset("digits", spec, batch_size, **stream)]

    solo_server = RunningServer(shared_epoch_bytes=0)
    try:
        solo = epoch(solo_server.target, **options)
    finally:
        solo_server.stop()
    sharing = RunningServer()
    try:
        results = [None, None]
        threads = [threading.Thread(target=lambda: results.__setitem__(0, _epoch(sharing.target))),
                   threading.Thread(target=lambda: results.__setitem__(1, epoch(sharing.target, **options)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert results[1] == solo and results[0] != solo
        assert _counts(sharing)["shared"] == 0
    finally:
        sharing.stop()
