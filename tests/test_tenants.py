"""Fair sharing of one server between tenants: deficit round robin, per-tenant limits, who is who."""

import asyncio
import collections
import random
import time

import grpc
import numpy as np
import pytest

from augserve.client import AsyncClient, Client, ResourceExhausted
from augserve.server.fair import DeficitRoundRobin
from augserve.server.tenants import OVERFLOW, TenantRefused, Tenants
from augserve.v1 import augserve_pb2 as pb
from augserve.v1 import augserve_pb2_grpc as rpc
from server_harness import RunningServer

SLOW = "imagenet-randaug"  # ~0.1 s a batch of 64 on the 2-core machine: a backlog lasts


def test_deficit_round_robin_shares_follow_the_weights_whatever_the_request_sizes():
    fair, rng = DeficitRoundRobin(quantum=64), random.Random(0)
    for tenant, weight in (("a", 1), ("b", 1), ("c", 2)):
        for _ in range(3000):
            cost = rng.choice([4, 16, 33, 64])
            fair.push(tenant, weight, cost, (tenant, cost))
    served = collections.Counter()
    for _ in range(3000):  # every tenant stays backlogged throughout
        tenant, cost = fair.pop()
        served[tenant] += cost
    total = sum(served.values())
    for tenant, share in (("a", 0.25), ("b", 0.25), ("c", 0.5)):
        assert abs(served[tenant] / total - share) < 0.01, served


def test_a_small_tenant_waits_at_most_one_turn_behind_a_backlog():
    fair = DeficitRoundRobin(quantum=64)
    for i in range(50):
        fair.push("greedy", 1, 64, ("greedy", i))
    assert fair.pop() == ("greedy", 0)
    fair.push("small", 1, 4, ("small", 0))
    assert ("small", 0) in [fair.pop(), fair.pop()] and len(fair) == 48
    while len(fair):
        fair.pop()
    assert not fair._queues and not fair._deficit and not fair._weights  # tenants come and go with connections


def test_batches_riding_along_are_paid_from_their_tenants_turns():
    fair = DeficitRoundRobin(quantum=64)
    for i in range(400):
        fair.push("a", 1, 16, ("a", i))
        fair.push("b", 1, 16, ("b", i))
    served = collections.Counter()
    for _ in range(100):  # every batch has room for 48 more samples: b's waiting batches join a's and vice versa
        first = fair.pop()
        room = [64 - 16]

        def fits(cost, item):
            if cost > room[0]:
                return False
            room[0] -= cost
            return True

        for tenant, _ in [first, *fair.pop_alongside(fits, besides=first[0])]:
            served[tenant] += 16
    assert abs(served["a"] - served["b"]) <= 64, served  # the shares stay even: riders pay from their turns


def test_tenants_come_from_tokens_then_the_header_then_the_connection():
    tenants = Tenants({"default": {"max_queue": 100}, "named": {
        "vision": {"token": "s3cret", "weight": 2}, "speech": {"weight": 3, "max_in_flight": 4}}}, 4096)
    assert tenants.of([("authorization", "Bearer s3cret"), ("x-augserve-tenant", "speech")], "ipv4:1").name == "vision"
    speech = tenants.of([("x-augserve-tenant", "speech")], "ipv4:1")
    assert (speech.weight, speech.max_in_flight, speech.max_queue, speech.source) == (3, 4, 100, "header")
    assert tenants.of([("x-augserve-tenant", "adhoc")], "ipv4:1").weight == 1
    assert tenants.of([], "ipv4:127.0.0.1:5000").name == "connection ipv4:127.0.0.1:5000"
    with pytest.raises(Exception, match="bound to a token"):
        tenants.of([("x-augserve-tenant", "vision")], "ipv4:1")
    with pytest.raises(ValueError, match=r"tenants.named.x.weight: expected a number > 0"):
        Tenants({"named": {"x": {"weight": 0}}}, 4096)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['wieght'\]"):
        Tenants({"named": {"x": {"wieght": 2}}}, 4096)


def test_declared_tenants_are_capped_and_forgotten_when_idle(monkeypatch):
    """24,000 invented names once left 24,000 tenants in the books and as many metric series."""
    now = [0.0]
    monkeypatch.setattr("augserve.server.tenants.time.monotonic", lambda: now[0])
    forgotten = []
    tenants = Tenants({"max_declared": 3, "declared_idle_seconds": 10}, 4096, forget=forgotten.append)

    def declare(name):
        return tenants.of([("x-augserve-tenant", name)], "ipv4:1").name

    assert [declare(name) for name in ("a", "b", "c", "d", "e")] == ["a", "b", "c", OVERFLOW, OVERFLOW]
    now[0] = 5.0
    assert declare("a") == "a"  # in use: remembered, and last to be forgotten
    now[0] = 12.0
    assert declare("f") == "f" and forgotten == ["b", "c"]
    assert [t.name for t in tenants.declared()] == ["a", "f"]
    now[0] = 30.0
    assert tenants.declared() == [] and forgotten == ["b", "c", "a", "f"]
    with pytest.raises(ValueError, match=r"tenants.max_declared: expected an integer in \[0, 1024\]"):
        Tenants({"max_declared": 5000}, 4096)


def test_several_authorization_headers_are_refused_whatever_their_order():
    """(wrong, right) was once let in and (right, wrong) refused: the last header counted."""
    tenants = Tenants({"named": {"vision": {"token": "s3cret"}}}, 4096)
    for pair in (("Bearer wrong", "Bearer s3cret"), ("Bearer s3cret", "Bearer wrong")):
        with pytest.raises(TenantRefused, match="2 headers") as refused:
            tenants.of([("authorization", value) for value in pair], "ipv4:1")
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert tenants.of([("authorization", "Bearer s3cret")], "ipv4:1").name == "vision"
    with pytest.raises(TenantRefused, match="x-augserve-tenant: 2 headers"):
        tenants.of([("x-augserve-tenant", "a"), ("x-augserve-tenant", "b")], "ipv4:1")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = tmp_path_factory.mktemp("tenants") / "serve.yaml"
    config.write_text("tenants:\n  named:\n    tiny: {max_queue: 64}\n    heavy: {weight: 2}\n"
                      "    vision: {token: s3cret, weight: 3}\n")
    running = RunningServer(metrics_port=0, max_batch=64, config=str(config))
    yield running
    running.stop()


def _tenants(server) -> dict:
    reply = rpc.AugmentationStub(server.channel()).ListTenants(pb.ListTenantsRequest(), timeout=30)
    return {t.name: t for t in reply.tenants}


def _images(count: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 3, side, side), dtype=np.uint8)


def test_a_small_tenants_request_is_served_before_a_greedy_tenants_backlog_drains(server):
    big, small = _images(64, 160), _images(4, 64, seed=1)
    finished = []

    async def run():
        async with AsyncClient(server.target, tenant="greedy", shared_memory=False) as greedy, \
                AsyncClient(server.target, tenant="small", shared_memory=False) as little:
            async def one(client, x, name):
                await client.augment(x, pipeline=SLOW)
                finished.append(name)

            backlog = [asyncio.ensure_future(one(greedy, big, f"greedy{i}")) for i in range(8)]
            deadline = time.monotonic() + 120
            while _tenants(server).get("greedy") is None or _tenants(server)["greedy"].queued_samples < 5 * 64:
                assert time.monotonic() < deadline, "the greedy tenant never had a backlog"
                await asyncio.sleep(0.01)
            before = len(finished)
            await one(little, small, "small")
            await asyncio.gather(*backlog)
            return before

    before = asyncio.run(run())
    # first come, first served: after every queued greedy batch; deficit round robin: after the one running
    # and at most one more (started while the small request waited max_delay_ms for others to merge with)
    assert finished.index("small") - before <= 2 and len(finished) - before >= 5, (before, finished)


def test_a_greedy_streams_turn_is_one_of_its_batches_whatever_max_batch_merges():
    """At the default --max-batch (256), a turn of 256 samples once let a greedy 16-deep stream of 64-image
    batches send four of them back to back while a small job waited."""
    running = RunningServer(metrics_port=0)
    big, small = _images(64, 160), _images(4, 64, seed=1)
    answered, waits = [], []

    async def run():
        async with AsyncClient(running.target, tenant="greedy", shared_memory=False) as greedy, \
                AsyncClient(running.target, tenant="small", shared_memory=False) as little:
            done = asyncio.Event()

            async def batches():
                for _ in range(200):
                    if done.is_set():
                        return
                    yield big

            async def stream():
                async for _ in greedy.map(batches(), pipeline=SLOW, prefetch=16):
                    answered.append(time.monotonic())

            streaming = asyncio.ensure_future(stream())
            deadline = time.monotonic() + 120
            while _tenants(running).get("greedy") is None or _tenants(running)["greedy"].queued_samples < 8 * 64:
                assert time.monotonic() < deadline, "the greedy stream never had a backlog"
                await asyncio.sleep(0.01)
            for key in range(5):
                before = len(answered)
                await little.augment(small, pipeline=SLOW, keys=np.arange(4 * key, 4 * key + 4))
                waits.append(len(answered) - before)
            done.set()
            await streaming

    try:
        asyncio.run(run())
    finally:
        running.stop()
    # the greedy batch running, at most one more (its turn), and one answer already computed but not yet read
    assert max(waits) <= 3, waits


def test_a_tenant_that_fills_its_own_queue_is_refused_and_another_is_not(server):
    x = _images(32, 160)
    with Client(server.target, tenant="tiny") as tiny, Client(server.target, tenant="other") as other:
        async def flood():
            async with AsyncClient(server.target, tenant="tiny") as client:
                return await asyncio.gather(*[client.augment(x, pipeline=SLOW) for _ in range(6)],
                                            return_exceptions=True)

        results = asyncio.run(flood())
        refused = [r for r in results if isinstance(r, ResourceExhausted)]
        assert refused and "tenant 'tiny': queue full" in str(refused[0]) and "its limit 64" in str(refused[0])
        assert len(refused) < 6
        assert other.augment(x, pipeline=SLOW).x.shape == (32, 3, 224, 224)  # not limited by tiny's queue
        assert tiny.augment(x[:4], pipeline=SLOW).x.shape[0] == 4  # and tiny again, once its queue drained


def test_weighted_tenants_share_the_device_by_their_weights(server):
    x, order = _images(64, 32), []  # max_batch samples: each request is a batch of its own
    names = ("light", "light2", "heavy")

    async def run():
        clients = {name: AsyncClient(server.target, tenant=name, shared_memory=False) for name in (*names, "blocker")}

        async def one(name, batch):
            await clients[name].augment(batch, pipeline=SLOW)
            order.append(name)

        blocker = asyncio.ensure_future(one("blocker", _images(256, 224)))  # holds the device while queues fill
        deadline = time.monotonic() + 120
        while getattr(_tenants(server).get("blocker"), "in_flight", 0) == 0:
            assert time.monotonic() < deadline, "the blocking request never arrived"
            await asyncio.sleep(0.01)
        requests = [asyncio.ensure_future(one(name, x)) for _ in range(12) for name in names]
        while not all(getattr(_tenants(server).get(n), "queued_samples", 0) == 12 * 64 for n in names):
            assert time.monotonic() < deadline and not blocker.done(), "the tenants never were all backlogged"
            await asyncio.sleep(0.01)
        await asyncio.gather(blocker, *requests)
        for client in clients.values():
            await client.close()

    asyncio.run(run())
    order.remove("blocker")
    registry = server.server.metrics.registry  # per-tenant metrics: samples served, time to the device
    assert registry.get_sample_value("augserve_tenant_samples_total", {"tenant": "heavy"}) == 12 * 64
    assert registry.get_sample_value("augserve_tenant_wait_seconds_count", {"tenant": "light"}) == 12
    assert registry.get_sample_value("augserve_tenant_queue_samples", {"tenant": "light2"}) == 0
    with Client(server.target, shared_memory=False) as anonymous:  # a tenant by connection, forgotten once idle
        anonymous.augment(x, pipeline=SLOW)
    assert not [name for name in server.server.batcher.ledger.seen() if name.startswith("connection ")]
    assert not [name for name in _tenants(server) if name.startswith("connection ")]
    # a turn of deficit round robin sends 1 batch of each light tenant and 2 of the heavy one: the first 24
    # answers (the heavy tenant's last comes at 24) are six whole turns
    shares = collections.Counter(order[:24])
    assert shares["heavy"] == 12 and shares["light"] == shares["light2"] == 6, (shares, " ".join(order))


def test_a_token_names_its_tenant_and_a_header_may_not_claim_it(server):
    with Client(server.target, token="s3cret") as client:
        client.augment(_images(2, 32), pipeline=SLOW)
    listed = _tenants(server)
    assert listed["vision"].source == "token" and listed["vision"].weight == 3 and listed["heavy"].weight == 2
    with pytest.raises(Exception, match="bound to a token"):
        Client(server.target, tenant="vision").augment(_images(2, 32), pipeline=SLOW)


def test_the_client_declares_its_tenant_from_the_argument_or_the_environment(monkeypatch):
    from augserve.client.settings import ClientSettings

    monkeypatch.setenv("AUGSERVE_TENANT", "from-env")
    assert ("x-augserve-tenant", "from-env") in ClientSettings("127.0.0.1:1").metadata
    assert ClientSettings("127.0.0.1:1", tenant="job-17", token="t").metadata == (
        ("authorization", "Bearer t"), ("x-augserve-tenant", "job-17"))
    monkeypatch.delenv("AUGSERVE_TENANT")
    assert ClientSettings("127.0.0.1:1").metadata is None


def test_waiting_batches_of_other_tenants_join_one_device_batch_bit_identical_to_solo_runs(server):
    from augserve.pipeline import Pipeline

    parts = [_images(16, 32, seed=s) for s in range(4)]
    registry = server.server.metrics.registry

    async def run():
        clients = [AsyncClient(server.target, tenant=f"rider{k}", shared_memory=False) for k in range(4)]
        blocker = AsyncClient(server.target, tenant="blocker", shared_memory=False)
        before = registry.get_sample_value("augserve_device_batches_total") + 1
        held = asyncio.ensure_future(blocker.augment(_images(256, 224), pipeline=SLOW))
        deadline = time.monotonic() + 120
        while registry.get_sample_value("augserve_device_batches_total") < before:  # the blocker is on the device
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        answers = [asyncio.ensure_future(c.augment(x, pipeline=SLOW, seed=5)) for c, x in zip(clients, parts)]
        while sum(getattr(_tenants(server).get(f"rider{k}"), "queued_samples", 0) for k in range(4)) < 64:
            assert time.monotonic() < deadline and not held.done(), "the riders never all waited"
            await asyncio.sleep(0.01)
        await held
        results = await asyncio.gather(*answers)
        batches = registry.get_sample_value("augserve_device_batches_total") - before
        for client in (*clients, blocker):
            await client.close()
        return results, batches

    results, batches = asyncio.run(run())
    assert batches == 1  # after the blocker's: one batch for the four tenants' 16 samples each
    for x, batch in zip(parts, results):
        assert np.array_equal(batch.x, Pipeline.from_spec(SLOW)(x, seed=5).x.numpy())


def test_forgotten_tenants_leave_listings_and_metrics(tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text("tenants:\n  max_declared: 2\n  declared_idle_seconds: 1\n")
    running = RunningServer(metrics_port=0, config=str(config))
    registry = running.server.metrics.registry

    def labels():
        return {sample.labels["tenant"] for family in registry.collect() for sample in family.samples
                if family.name == "augserve_tenant_samples"}

    try:
        for name in ("t1", "t2", "t3", "t4"):
            with Client(running.target, tenant=name, shared_memory=False) as client:
                client.augment(_images(2, 16), pipeline="rand-m9-n2")
        assert labels() == {"t1", "t2", OVERFLOW}
        assert set(_tenants(running)) == {"t1", "t2"}
        time.sleep(1.2)
        with Client(running.target, tenant="t5", shared_memory=False) as client:
            client.augment(_images(2, 16), pipeline="rand-m9-n2")
        assert labels() == {"t5", OVERFLOW} and set(_tenants(running)) == {"t5"}
    finally:
        running.stop()
