"""DataLoader workers beside a busy gRPC client: no lost worker, and a clear refusal where gRPC cannot follow."""

import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from augserve import Pipeline
from augserve.client import Client, IndexedDataset, RemoteAugment
from augserve.client.fork_safety import make_workers_fork_safe
from augserve.random import sample_keys
from server_harness import RunningServer

EPOCHS = 20
X, Y = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8), torch.arange(40) % 5


@pytest.fixture(scope="module")
def server():
    running = RunningServer(max_batch=64, max_delay_ms=2.0)
    yield running
    running.stop()


def loader(epoch: int, **options) -> DataLoader:
    return DataLoader(IndexedDataset(TensorDataset(X, Y)), batch_size=8, shuffle=True,
                      generator=torch.Generator().manual_seed(epoch), **options)


def keep_streaming(target: str, stop: threading.Event, answered: list) -> None:
    """Another job of the same process (an eval loader, a second stream): calls in flight at every fork."""
    with Client(target, timeout=60, shared_memory=False) as client:
        x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
        while not stop.is_set():
            for _ in client.map(((x,) for _ in range(8)), pipeline="cifar-randaug", prefetch=4):
                answered.append(1)
                if stop.is_set():
                    break


def test_forking_loaders_beside_two_busy_streams_lose_no_worker(server):
    pipe = Pipeline.from_spec("cifar-randaug")
    stop, answered = threading.Event(), []
    threads = [threading.Thread(target=keep_streaming, args=(server.target, stop, answered)) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        with Client(server.target, timeout=60, shared_memory=False) as client:
            for epoch in range(EPOCHS):  # a new loader, so new workers, every epoch
                workers = loader(epoch, num_workers=2)
                remote = RemoteAugment(workers, client, "cifar-randaug", seed=5, num_classes=5, epoch=epoch)
                batches = list(remote)
                assert workers.multiprocessing_context.get_start_method() == "forkserver"
                expected = list(loader(epoch))
                assert len(batches) == len(expected) == 5, f"epoch {epoch}"
                for batch, (bx, by, index) in zip(batches, expected):
                    local = pipe(bx, by, seed=5, keys=sample_keys(index, epoch), num_classes=5)
                    assert torch.equal(batch.x, local.x) and torch.equal(batch.labels, local.labels), f"epoch {epoch}"
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert len(answered) > EPOCHS  # the neighbours really were streaming all along


def test_only_loaders_that_would_fork_get_the_forkserver():
    forking = loader(0, num_workers=2)
    make_workers_fork_safe(forking)
    assert forking.multiprocessing_context.get_start_method() == "forkserver"
    chosen = loader(0, num_workers=2, multiprocessing_context="fork")  # the user's explicit choice stands
    make_workers_fork_safe(chosen)
    assert chosen.multiprocessing_context.get_start_method() == "fork"
    in_process = loader(0)
    make_workers_fork_safe(in_process)
    assert in_process.multiprocessing_context is None


CHILD = textwrap.dedent("""
    import os
    from augserve.client import Client
    Client("127.0.0.1:1").stub  # a channel opened (no server needed)
    pid = os.fork()
    if pid == 0:
        try:
            Client("127.0.0.1:1").stub
        except RuntimeError as error:
            print("refused:", error, flush=True)
            os._exit(0)
        os._exit(3)
    print("child exit", os.waitpid(pid, 0)[1] >> 8)
    Client("127.0.0.1:1").stub  # the parent keeps its channels
    print("parent ok")
""")


def test_a_child_forked_after_channels_opened_refuses_with_the_fix():
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "multiprocessing_context='forkserver'" in result.stdout
    assert "child exit 0" in result.stdout and "parent ok" in result.stdout
