"""Network hosts on this machine (root): network namespaces on a bridge, for the multi-host tests and bench.

Each host is a network namespace with one address on a private subnet; the bridge joining them lives
in a namespace of its own, so nothing touches the machine's own network (and two test processes'
subnets never meet). A name can resolve to several hosts' addresses, as a Kubernetes headless
Service's does, through each host's ``/etc/hosts`` (``ip netns exec`` mounts ``/etc/netns/<ns>/hosts``
there). Faults are the silent ones a cluster has: ``partition`` drops every packet of a host, both
ways, without a reset; ``freeze`` stops its processes (SIGSTOP), as a long pause or a stuck device does.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import time

SUBNET = "10.77.0"  # every set of hosts has a bridge of its own: subnets of other sets never meet
NETNS_ETC = pathlib.Path("/etc/netns")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Namespaces a killed run left behind (their process is gone)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = name.removeprefix("augh").split("-")[0]
        if name.startswith("augh") and owner.isdigit() and not _alive(int(owner)):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


class Hosts:
    """``Hosts(["replica-a", "replica-b", "trainer"], names={"augserve.test": ["replica-a", "replica-b"]})``:
    a context manager; ``spawn`` runs a program on a host, ``address`` is its address."""

    def __init__(self, hosts: list[str], names: dict[str, list[str]] | None = None):
        if not 1 <= len(hosts) <= 200:
            raise ValueError(f"hosts: expected 1 to 200, got {len(hosts)}")
        self.hosts = list(hosts)
        self.names = dict(names or {})
        tag = f"augh{os.getpid()}"
        self.switch = f"{tag}-switch"
        self.namespaces = {host: f"{tag}-{index}" for index, host in enumerate(self.hosts)}
        self.addresses = {host: f"{SUBNET}.{10 + index}" for index, host in enumerate(self.hosts)}
        self.processes: list[subprocess.Popen] = []

    def address(self, host: str) -> str:
        return self.addresses[host]

    def __enter__(self) -> "Hosts":
        remove_stale()
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _make(self) -> None:
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "bridge", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "bridge", "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{self.addresses[host]} {name}\n" for name, members in self.names.items() for host in members)
        hosts_file += "".join(f"{address} {host}\n" for host, address in self.addresses.items())
        for index, host in enumerate(self.hosts):
            namespace = self.namespaces[host]
            _ip("netns", "add", namespace)
            _ip("-n", self.switch, "link", "add", f"port{index}", "type", "veth", "peer", "name", "eth0",
                "netns", namespace)
            _ip("-n", self.switch, "link", "set", f"port{index}", "master", "bridge", "up")
            _ip("-n", namespace, "addr", "add", f"{self.addresses[host]}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            etc = NETNS_ETC / namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_file)

    def command(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[host], *argv]

    def spawn(self, host: str, argv: list[str], **popen) -> subprocess.Popen:
        """A program on ``host``, in a process group of its own (``close`` ends it)."""
        process = subprocess.Popen(self.command(host, argv), start_new_session=True, **popen)
        self.processes.append(process)
        return process

    def run(self, host: str, argv: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(host, argv), capture_output=True, text=True, timeout=timeout, **kwargs)

    def partition(self, host: str) -> None:
        """Every packet to and from ``host`` dropped silently (its own loopback still works)."""
        for rule in (["INPUT", "-i", "eth0"], ["OUTPUT", "-o", "eth0"]):
            subprocess.run(self.command(host, ["iptables", "-A", *rule, "-j", "DROP"]), check=True,
                           capture_output=True, timeout=30)

    def heal(self, host: str) -> None:
        subprocess.run(self.command(host, ["iptables", "-F"]), check=True, capture_output=True, timeout=30)

    @staticmethod
    def freeze(process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGSTOP)

    @staticmethod
    def thaw(process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGCONT)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(timeout=30)

    def close(self) -> None:
        """Every process ended, every namespace and hosts file removed (also after a failed test)."""
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGCONT)
                except ProcessLookupError:
                    continue
                self.kill(process)
        deadline = time.monotonic() + 30
        for namespace in [*self.namespaces.values(), self.switch]:
            while time.monotonic() < deadline:
                if subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30).returncode \
                        == 0 or namespace not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                                text=True, timeout=30).stdout:
                    break
                time.sleep(0.2)
            shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)
