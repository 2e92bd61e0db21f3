"""DataLoader workers beside a busy gRPC client: scripts as users write them (no ``__main__`` guard) lose no
worker, and where gRPC cannot follow a fork the refusal names the fix at once."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from augserve import grpc_fork
from augserve.client.fork_safety import make_workers_fork_safe
from server_harness import RunningServer

EPOCHS = 20

# A training script as users write it on Linux: no guard, a forking 2-worker loader every epoch, two other
# threads streaming through gRPC the whole time; every batch checked against the pipeline run in process.
SCRIPT = textwrap.dedent("""
    import os, sys, threading
    {first_import}
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from augserve import Pipeline
    from augserve.client import Client, IndexedDataset, RemoteAugment
    from augserve.random import sample_keys

    target, epochs = sys.argv[1], int(sys.argv[2])
    X, Y = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8), torch.arange(40) % 5
    stop, answered = threading.Event(), []

    def keep_streaming():
        with Client(target, timeout=60, shared_memory=False) as client:
            x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
            while not stop.is_set():
                for _ in client.map(((x,) for _ in range(8)), pipeline="cifar-randaug", prefetch=4):
                    answered.append(1)
                    if stop.is_set():
                        break

    def loader(epoch, **options):
        return DataLoader(IndexedDataset(TensorDataset(X, Y)), batch_size=8, shuffle=True,
                          generator=torch.Generator().manual_seed(epoch), **options)

    {guard}
    threads = [threading.Thread(target=keep_streaming) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        pipe = Pipeline.from_spec("cifar-randaug")
        with Client(target, timeout=60, shared_memory=False) as client:
            for epoch in range(epochs):
                workers = loader(epoch, num_workers=2)
                batches = list(RemoteAugment(workers, client, "cifar-randaug", seed=5, num_classes=5, epoch=epoch))
                expected = list(loader(epoch))
                assert len(batches) == len(expected) == 5, epoch
                for batch, (bx, by, index) in zip(batches, expected):
                    local = pipe(bx, by, seed=5, keys=sample_keys(index, epoch), num_classes=5)
                    assert torch.equal(batch.x, local.x) and torch.equal(batch.labels, local.labels), epoch
        context = workers.multiprocessing_context
        method = "default" if context is None else context.get_start_method()
    finally:
        stop.set()
        for thread in threads:  # out of their calls before the interpreter goes: gRPC's must not outlive it
            thread.join(60)
    print("epochs", epochs, "start method", method, "answered beside", len(answered), flush=True)
""")


@pytest.fixture(scope="module")
def server():
    running = RunningServer(max_batch=64, max_delay_ms=2.0)
    yield running
    running.stop()


def run_script(tmp_path, target: str, epochs: int, grpc_first: bool = False, guarded: bool = False):
    script = SCRIPT.format(first_import="import grpc" if grpc_first else "",
                           guard='if __name__ == "__main__":' if guarded else "")
    if guarded:  # the body below the guard, indented as users write it
        head, body = script.split('if __name__ == "__main__":\n')
        script = head + 'if __name__ == "__main__":\n' + textwrap.indent(body, "    ")
    path = tmp_path / "train.py"
    path.write_text(script)
    environment = {key: value for key, value in os.environ.items() if key != grpc_fork.VARIABLE}
    return subprocess.run([sys.executable, str(path), target, str(epochs)], capture_output=True, text=True,
                          timeout=600, env=environment, cwd=tmp_path)


def test_a_script_without_a_guard_forks_its_workers_beside_two_busy_streams(server, tmp_path):
    """The workers once started from the forkserver, which ran such a script again: 20 of 20 epochs failed."""
    result = run_script(tmp_path, server.target, EPOCHS)
    assert result.returncode == 0, result.stderr[-3000:]
    words = result.stdout.split()
    assert words[:4] == ["epochs", str(EPOCHS), "start", "method"] and words[4] == "default"  # forked
    assert int(words[-1]) > EPOCHS  # the neighbours really were streaming all along


def test_with_grpc_imported_first_an_unguarded_script_is_refused_with_the_fix(server, tmp_path):
    result = run_script(tmp_path, server.target, 1, grpc_first=True)
    assert result.returncode != 0 and "exited unexpectedly" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("RuntimeError: RemoteAugment: gRPC's fork support is on"), message
    assert "Import augserve before grpc" in message and 'if __name__ == "__main__":' in message


def test_with_grpc_imported_first_a_guarded_script_starts_its_workers_from_the_forkserver(server, tmp_path):
    result = run_script(tmp_path, server.target, 2, grpc_first=True, guarded=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "start method forkserver" in result.stdout


def test_only_loaders_that_would_fork_unsafely_get_the_forkserver(monkeypatch):
    def loader(**options):
        return DataLoader(TensorDataset(torch.zeros(4)), **options)

    monkeypatch.setattr(grpc_fork, "forked_children_safe", lambda: True)
    forking = loader(num_workers=2)
    make_workers_fork_safe(forking)
    assert forking.multiprocessing_context is None  # forks, as the platform does
    monkeypatch.setattr(grpc_fork, "forked_children_safe", lambda: False)
    make_workers_fork_safe(forking)  # pytest's own __main__ is guarded
    assert forking.multiprocessing_context.get_start_method() == "forkserver"
    chosen = loader(num_workers=2, multiprocessing_context="fork")  # the user's explicit choice stands
    make_workers_fork_safe(chosen)
    assert chosen.multiprocessing_context.get_start_method() == "fork"
    in_process = loader()
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
