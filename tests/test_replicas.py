"""Several real `augserve serve` processes behind one client: balancing, failover after SIGKILL, draining."""

import asyncio
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from grpc_health.v1 import health_pb2

from augserve.client import AsyncClient, Client, RemoteDataset
from server_harness import ServerProcess

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
DATASET, PIPELINE, BATCH = "blobs", "rand-m9-n2", 64


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """Five replicas (three get killed) serving a dataset big enough (31 MB an epoch) that a stream is still
    running when killed."""
    root = tmp_path_factory.mktemp("replicas")
    generator = np.random.default_rng(0)
    np.savez(root / "blobs.npz", x=generator.integers(0, 256, (2560, 3, 64, 64), dtype=np.uint8),
             y=np.arange(2560) % 10)
    (root / "datasets.yaml").write_text(yaml.safe_dump(
        {"datasets": {DATASET: {"type": "arrays", "path": str(root / "blobs.npz")}}}))
    servers = ServerProcess.several(5, "--config", str(root / "datasets.yaml"),
                                    "--drain-delay-seconds", "60", "--grace-seconds", "5")
    yield servers
    for server in servers:
        server.stop()


def live(replicas):
    return [r for r in replicas if r.process.poll() is None]


def client_for(replicas, **options):
    return Client([r.target for r in replicas], timeout=60, **options)


def counts(replicas, method):
    return [r.metric("augserve_requests_total", method=method) for r in replicas]


def test_round_robin_spreads_calls_over_every_replica(replicas):
    with client_for(replicas, shared_memory=False) as client:  # no shared-memory probe call to count
        x = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
        for i in range(6):  # until every replica's connection and health check are up
            client.augment(x, pipeline=PIPELINE)
        time.sleep(0.5)
        before = counts(replicas, "Augment")
        for i in range(30):
            client.augment(x, pipeline=PIPELINE, keys=[i, i + 1])
    time.sleep(0.5)
    shares = [after - b for after, b in zip(counts(replicas, "Augment"), before)]
    assert sum(shares) == 30 and min(shares) >= 4, shares


def kill_the_replica_streaming(replicas, before, method: str = "StreamDataset") -> ServerProcess:
    """SIGKILL the one replica whose count of ``method`` requests grew since ``before``."""
    grew = [r for r, b, a in zip(replicas, before, counts(replicas, method)) if a > b]
    assert len(grew) == 1
    grew[0].process.send_signal(signal.SIGKILL)
    grew[0].process.wait(timeout=10)
    return grew[0]


def check_epoch(delivered, reference):
    assert [b.batch_index for b in delivered] == list(range(40))  # each batch once, in order
    indices = np.concatenate([np.asarray(b.indices) for b in delivered])  # numpy from Client, torch from RemoteDataset
    assert sorted(indices.tolist()) == list(range(2560))  # every sample exactly once
    for batch in delivered:
        expected = reference[batch.batch_index]
        for field in ("indices", "x", "labels"):
            assert np.array_equal(np.asarray(getattr(batch, field)), np.asarray(getattr(expected, field)))


@pytest.fixture(scope="module")
def reference(replicas):
    with client_for(replicas) as client:
        batches = {b.batch_index: b for b in RemoteDataset(client, DATASET, PIPELINE, BATCH, seed=3, epoch=1)}
    assert len(batches) == 40
    return batches


def test_sigkill_mid_epoch_fails_over_and_delivers_every_sample_once_bit_identical(replicas, reference):
    before = counts(replicas, "StreamDataset")
    delivered, killed = [], None
    with client_for(replicas) as client:
        for batch in RemoteDataset(client, DATASET, PIPELINE, BATCH, seed=3, epoch=1):
            delivered.append(batch)
            if len(delivered) == 5:
                killed = kill_the_replica_streaming(replicas, before)
    assert killed is not None and killed.process.returncode == -signal.SIGKILL
    check_epoch(delivered, reference)
    survivors = live(replicas)
    assert len(survivors) == 4 and sum(counts(survivors, "StreamDataset")) > sum(
        b for r, b in zip(replicas, before) if r in survivors)  # another replica finished the epoch


def test_the_async_client_resumes_a_served_epoch_after_a_sigkill_too(replicas, reference):
    survivors = live(replicas)
    before = counts(survivors, "StreamDataset")

    async def epoch():
        delivered = []
        async with AsyncClient([r.target for r in survivors]) as client:
            async for batch in client.stream_dataset(DATASET, PIPELINE, BATCH, seed=3, epoch=1):
                delivered.append(batch)
                if len(delivered) == 5:
                    kill_the_replica_streaming(survivors, before)
        return delivered

    check_epoch(asyncio.run(epoch()), reference)
    assert len(live(replicas)) == 3


def test_the_async_client_fails_over_a_map_stream_after_a_sigkill(replicas):
    survivors = live(replicas)
    batches = [torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(s))
               for s in range(24)]
    with client_for(survivors) as client:
        reference = [b.x for b in client.map(batches, pipeline=PIPELINE, seed=4, prefetch=4)]
    before = counts(survivors, "AugmentStream")

    async def stream():
        async def source():
            for batch in batches:
                yield batch

        streamed = []
        async with AsyncClient([r.target for r in survivors]) as client:
            async for batch in client.map(source(), pipeline=PIPELINE, seed=4, prefetch=4):
                streamed.append(batch.x)
                if len(streamed) == 1:
                    kill_the_replica_streaming(survivors, before, "AugmentStream")
        return streamed

    streamed = asyncio.run(stream())  # the unanswered batches went again to another replica
    assert len(streamed) == 24 and all(torch.equal(a, b) for a, b in zip(streamed, reference))
    assert len(live(replicas)) == 2


def test_a_draining_replica_reports_not_serving_and_gets_no_new_work(replicas):
    survivors = live(replicas)
    assert len(survivors) >= 2
    batches = [torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(s))
               for s in range(24)]
    with client_for(survivors) as client:
        reference = [b.x for b in client.map(batches, pipeline=PIPELINE, seed=4, prefetch=4)]
    with client_for(survivors) as client:
        before = counts(survivors, "AugmentStream")
        results = client.map(batches, pipeline=PIPELINE, seed=4, prefetch=4)
        streamed = [next(results).x]
        on = [r for r, b, a in zip(survivors, before, counts(survivors, "AugmentStream")) if a > b]
        assert len(on) == 1
        draining = on[0]
        draining.process.send_signal(signal.SIGTERM)
        draining.wait_for(NOT_SERVING, timeout=10)
        streamed += [b.x for b in results]  # the stream fails over; unanswered batches are sent again elsewhere
        assert all(torch.equal(a, b) for a, b in zip(streamed, reference)) and len(streamed) == 24

        drained = draining.metric("augserve_requests_total", method="Augment")
        for i in range(12):
            client.augment(batches[i], pipeline=PIPELINE)
        time.sleep(0.5)
        # client-side health checking takes it out of the round robin: not even a call reaches it
        assert draining.metric("augserve_requests_total", method="Augment") == drained
        assert draining.health() == NOT_SERVING and draining.process.poll() is None  # still draining
    probe = subprocess.run([sys.executable, "-m", "augserve.cli", "health", "--target", draining.target],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 1 and "NOT_SERVING" in probe.stdout  # what a readiness probe sees
    alive = subprocess.run([sys.executable, "-m", "augserve.cli", "health", "--target", draining.target,
                            "--service", "liveness"], capture_output=True, text=True, timeout=60)
    assert alive.returncode == 0  # a liveness probe leaves a draining replica alone
