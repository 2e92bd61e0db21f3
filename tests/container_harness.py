"""Run a built image's entrypoint the way the Kubernetes Deployment runs it, without a container runtime.

buildah mounts the image; the entrypoint then runs in a network namespace of its own (a veth pair
to this host, so the manifest's ports are used as they are), a mount and PID namespace (the
entrypoint is PID 1, as in a pod), with the root file system read-only when the manifest says so,
/proc, a minimal /dev, the manifest's volumes (emptyDir as tmpfs, ConfigMaps and host folders as
read-only binds), its user and group, no new privileges and no capabilities, and exactly the
image's environment plus the manifest's.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import signal
import subprocess
import time

DEVICES = ("null", "zero", "random", "urandom", "full", "tty")


def buildah(*args: str, timeout: float = 600) -> str:
    return subprocess.run(["buildah", *args], check=True, capture_output=True, text=True, timeout=timeout).stdout


class Pod:
    """One container of a pod spec, started from ``image`` on a network host of its own at ``self.address``.

    ``volumes`` maps a volumeMount's name to a host folder (ConfigMaps, Secrets, hostPath) or to None for
    an emptyDir (a tmpfs of its sizeLimit); ``env`` is every variable the pod gets besides the image's."""

    def __init__(self, image: str, spec: dict, container: dict, env: dict[str, str],
                 volumes: dict[str, pathlib.Path | None], work: pathlib.Path):
        self.image, self.work = image, work
        pid = os.getpid()  # a network of its own per test process: sessions beside this one make theirs
        subnet = f"10.{100 + pid % 100}.{pid // 100 % 250}"
        self.namespace, self.veth = f"augserve-pod-{pid}", f"asp{pid}"[:15]
        self.address, self.host = f"{subnet}.2", f"{subnet}.1"
        config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
        self.command = [*config.get("Entrypoint", []), *(container.get("args") or config.get("Cmd") or [])]
        self.env = dict(item.split("=", 1) for item in config.get("Env", []))
        self.env.update(env)
        security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
        self.user, self.group = security["runAsUser"], security["runAsGroup"]
        self.groups = [security.get("fsGroup", self.group)]
        self.read_only = security.get("readOnlyRootFilesystem", False)
        self.no_new_privileges = security.get("allowPrivilegeEscalation", True) is False
        self.mounts = [(m["name"], m["mountPath"], volumes.get(m["name"]), m.get("readOnly", False))
                       for m in container.get("volumeMounts", [])]
        self.sizes = {v["name"]: v.get("emptyDir", {}).get("sizeLimit", "1Gi") for v in spec.get("volumes", [])}
        self.container = buildah("from", "--quiet", "--pull=never", image).strip()
        self.rootfs = buildah("mount", self.container).strip()
        self.process: subprocess.Popen | None = None
        self.log = work / "pod.log"

    def _script(self) -> str:
        root = self.work / "root"
        root.mkdir()
        lines = ["set -e", f"R={shlex.quote(str(root))}", f"mount --bind {shlex.quote(self.rootfs)} \"$R\""]
        for _, path, _, _ in self.mounts:  # mount points, made as a runtime makes them before the root turns read-only
            os.makedirs(self.rootfs + path, exist_ok=True)
        if self.read_only:
            lines.append('mount -o remount,bind,ro "$R"')
        lines += ['mount -t proc proc "$R/proc"', 'mount -t tmpfs -o size=16m,mode=755 tmpfs "$R/dev"',
                  'mkdir "$R/dev/shm" && mount -t tmpfs -o size=256m,mode=1777 tmpfs "$R/dev/shm"']
        lines += [f'touch "$R/dev/{d}" && mount --bind /dev/{d} "$R/dev/{d}"' for d in DEVICES]
        for name, path, source, read_only in self.mounts:
            target = f'"$R"{shlex.quote(path)}'
            if source is None:
                size = self.sizes.get(name, "1Gi").replace("Gi", "g").replace("Mi", "m")
                lines.append(f"mount -t tmpfs -o size={size},mode=1777 tmpfs {target}")
            else:
                lines.append(f"mount --bind {shlex.quote(str(source))} {target}")
                if read_only:
                    lines.append(f"mount -o remount,bind,ro {target}")
        privileges = ["--no-new-privs"] if self.no_new_privileges else []
        lines.append(f'exec chroot "$R" setpriv --reuid={self.user} --regid={self.group} '
                     f'--groups={",".join(map(str, self.groups))} --inh-caps=-all --bounding-set=-all '
                     f'{" ".join(privileges)} -- {shlex.join(self.command)}')
        return "\n".join(lines)

    def start(self) -> None:
        run = ["ip", "netns", "add", self.namespace]
        subprocess.run(run, check=True)
        for command in (f"ip link add {self.veth} type veth peer name eth0 netns {self.namespace}",
                        f"ip addr add {self.host}/30 dev {self.veth}",
                        f"ip link set {self.veth} up",
                        f"ip netns exec {self.namespace} ip addr add {self.address}/30 dev eth0",
                        f"ip netns exec {self.namespace} ip link set eth0 up",
                        f"ip netns exec {self.namespace} ip link set lo up"):
            subprocess.run(command.split(), check=True)
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, "unshare", "--mount", "--pid", "--fork",
                 "--propagation", "private", "--kill-child", "sh", "-c", self._script()],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def entrypoint_pid(self, timeout: float = 30) -> int:
        """The host PID of the entrypoint (PID 1 of the pod's namespace)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
            if children.split():
                return int(children.split()[0])
            time.sleep(0.1)
        raise RuntimeError(f"the entrypoint did not start; log:\n{self.log.read_text()}")

    def terminate(self) -> None:
        """SIGTERM to the entrypoint, as the kubelet sends it."""
        os.kill(self.entrypoint_pid(), signal.SIGTERM)

    def wait(self, grace: float) -> int:
        """The entrypoint's exit status, within ``grace`` seconds (the pod's termination grace period)."""
        return self.process.wait(timeout=grace)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        subprocess.run(["buildah", "umount", self.container], capture_output=True)
        subprocess.run(["buildah", "rm", self.container], capture_output=True)
