"""Replicas and trainers on network hosts (``hosts.py``): what the multi-host tests and the bench run.

``Cluster`` starts ``augserve serve`` on replica hosts, waits for their health, reads their metrics
(from the host itself, over its loopback, so a partitioned replica can still be read) and puts one
back after a fault. ``Trainer`` runs ``hosts_trainer.py`` on a host and collects its JSON lines and
its failover log lines as they come.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np

from augserve.tools.hosts import Hosts

PYTHON = sys.executable
AUGSERVE = str(pathlib.Path(sys.executable).with_name("augserve"))
REPLICAS = ("replica-a", "replica-b")
NAME = "augserve.test"  # what every replica's address is listed under, as a headless Service's name is
TARGET = f"dns:///{NAME}:50051"
FAULTS = ("partition", "freeze", "kill")

SCRAPE = """
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen("http://127.0.0.1:9090/metrics", timeout=10).read().decode()
name, labels = sys.argv[1], dict(pair.split("=", 1) for pair in sys.argv[2:])
print(sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
          if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())))
"""


def write_jpegs(root: pathlib.Path, per_class: int = 512, size: int = 160) -> pathlib.Path:
    """Two class folders of ``per_class`` JPEGs (a ramp with noise): a served folder dataset."""
    from PIL import Image

    generator = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size)[None, :, None]
    for label in range(2):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = (ramp + generator.integers(0, 50, (size, size, 3))).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{label}" / f"{index:04d}.jpg", quality=90)
    return root


def environment() -> dict[str, str]:
    """This process's environment, with this checkout first on the path of every program started on a host."""
    root = str(pathlib.Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


class Cluster:
    """Replicas on hosts of their own, serving ``config``; trainers run on the other hosts."""

    def __init__(self, hosts: Hosts, config: pathlib.Path, logs: pathlib.Path):
        self.hosts, self.config, self.logs = hosts, config, logs
        self.env = environment()
        self.replicas: dict[str, subprocess.Popen] = {}

    def start(self, host: str) -> None:
        log = open(self.logs / f"{host}.log", "a")
        # no shared epochs: every run repeats one epoch, and a fault must meet a replica computing it, not a window
        # that already holds the whole epoch from the run before
        self.replicas[host] = self.hosts.spawn(host, [AUGSERVE, "serve", "--host", "0.0.0.0", "--config",
                                                      str(self.config), "--shared-epoch-bytes", "0"],
                                               stdout=log, stderr=subprocess.STDOUT, env=self.env)

    def wait_ready(self, host: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.replicas[host].poll() is not None:
                raise RuntimeError(f"{host} exited: {(self.logs / f'{host}.log').read_text()[-2000:]}")
            if self.hosts.run(host, [AUGSERVE, "health", "--target", "127.0.0.1:50051"], env=self.env).returncode == 0:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{host} did not become ready in {timeout} s")

    def metric(self, host: str, name: str, **labels: str) -> float:
        result = self.hosts.run(host, [PYTHON, "-c", SCRAPE, name, *(f"{k}={v}" for k, v in labels.items())],
                                env=self.env, timeout=60)
        if result.returncode:
            raise RuntimeError(f"metrics of {host}: {result.stderr}")
        return float(result.stdout)

    def carrier(self, method: str, timeout: float = 30) -> str:
        """The replica that holds the one open ``method`` stream."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            open_streams = {host: self.metric(host, "augserve_streams_open", method=method) for host in self.replicas}
            carrying = [host for host, count in open_streams.items() if count >= 1]
            if len(carrying) == 1:
                return carrying[0]
            time.sleep(0.2)
        raise TimeoutError(f"no single replica holds the {method} stream: {open_streams}")

    def fault(self, kind: str, host: str) -> float:
        """Partition, freeze (SIGSTOP) or kill a replica; when it happened (``time.time()``)."""
        if kind == "partition":
            self.hosts.partition(host)
        elif kind == "freeze":
            self.hosts.freeze(self.replicas[host])
        elif kind == "kill":
            self.hosts.kill(self.replicas[host])
        else:
            raise ValueError(f"fault: expected one of {', '.join(FAULTS)}, got {kind!r}")
        return time.time()

    def faulted(self, trainer: "Trainer", kind: str, method: str, after: int, timeout: float) -> float:
        """Fault the replica carrying the trainer's ``method`` stream once ``after`` batches arrived, let the
        trainer end (within ``timeout``), put the replica back; when the fault happened. The carrier is found
        from the first batch on, not after ``after``: on a busy machine reading the replicas' metrics takes
        seconds, and the stream could be over by then."""
        carrier = None
        try:
            trainer.wait_for(1)
            carrier = self.carrier(method)
            trainer.wait_for(after)
            at = self.fault(kind, carrier)
            if trainer.process.poll() is not None:
                raise RuntimeError(f"the trainer ended before the fault: {trainer.items[-1:]}")
            trainer.finish(timeout)
            return at
        finally:
            trainer.stop()
            if carrier is not None:
                self.restore(carrier)

    def restore(self, host: str, timeout: float = 90) -> None:
        """The replica back as it was: thawed, reachable, running, and holding no stream. A stream it kept for a
        trainer that has gone meanwhile ends by keepalive (20 s); until then ``carrier`` would see two."""
        self.hosts.heal(host)
        process = self.replicas[host]
        if process.poll() is None:
            self.hosts.thaw(process)
        else:
            self.start(host)
        self.wait_ready(host)
        deadline = time.monotonic() + timeout
        while (streams := self.metric(host, "augserve_streams_open")) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host} still holds {streams:.0f} streams {timeout} s after its restore")
            time.sleep(0.5)


class Trainer:
    """``hosts_trainer.py`` on a host: its JSON lines as they come, its failover log lines."""

    def __init__(self, cluster: Cluster, host: str, *args: str, target: str = TARGET):
        self.process = cluster.hosts.spawn(host, [PYTHON, "-m", "augserve.tools.hosts_trainer", *args,
                                                  "--target", target], env=cluster.env, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)
        self.items: list[dict] = []
        self.log: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(self.process.stdout, self.items, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.process.stderr, self.log, False), daemon=True)]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list, json_lines: bool) -> None:
        for line in stream:
            into.append(json.loads(line) if json_lines else line)

    @property
    def batches(self) -> list[dict]:
        return [item for item in self.items if "batch" in item]

    def wait_for(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.batches) < count and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(self.batches) < count:
            raise TimeoutError(f"{len(self.batches)} of {count} batches; {self.items[-1:]} {self.log[-3:]}")

    def finish(self, timeout: float) -> dict:
        """The trainer's last line once it exits; TimeoutError when it does not end within ``timeout`` (a hang)."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"the trainer hung: {len(self.batches)} batches, then nothing for {timeout} s; "
                               f"log: {self.log[-3:]}") from None
        for reader in self._readers:
            reader.join(timeout=30)
        return self.items[-1] if self.items else {}

    def failovers(self) -> list[float]:
        """When the client gave up on a replica and went to another (its log lines' timestamps)."""
        return [float(line.split()[0]) for line in self.log if "resuming on another replica" in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            Hosts.kill(self.process)
