"""The client installed alone (no torch, no server stack) into a second virtualenv, against a real server.

The virtualenv is .venv-client at the repository root, made once per pyproject.toml (like .venv):
`pip install -e .[jax]` and pytest, nothing else. tests/client_only/check_numpy_client.py runs in it.
"""

import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from augserve.client import Client
from augserve.pipeline import Pipeline
from server_harness import RunningServer

REPO = pathlib.Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-client"
CHECK = REPO / "tests" / "client_only" / "check_numpy_client.py"
SPEC = [{"op": "hflip"}, {"op": "rand_augment", "n": 2, "m": 9}]
NORMALIZED = [{"op": "hflip"}, {"op": "normalize", "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}]


def _client_python() -> pathlib.Path:
    """.venv-client's interpreter, (re)made when pyproject.toml changed."""
    python = VENV / "bin" / "python"
    stamp = VENV / f".installed-{hashlib.sha256((REPO / 'pyproject.toml').read_bytes()).hexdigest()[:16]}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e",
                        f"{REPO}[jax]", "pytest"], check=True, timeout=900)
        stamp.touch()
    return python


@pytest.fixture(scope="module")
def server():
    running = RunningServer(metrics_port=0)
    yield running
    running.stop()


def test_the_client_alone_installs_without_torch_and_works_numpy_first(server, tmp_path):
    python = _client_python()
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True,
                               text=True, check=True).stdout
    names = {package["name"].lower() for package in json.loads(installed)}
    assert {"grpcio", "protobuf", "numpy", "jax"} <= names
    assert not names & {"torch", "torchvision", "kornia", "scikit-image", "matplotlib", "prometheus-client", "pyyaml"}

    photos = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(6) % 4
    local = Pipeline.from_spec(SPEC)(photos, labels, seed=7, num_classes=4)
    with Client(server.target, shared_memory=False) as client:
        digits = next(b for b in client.stream_dataset("digits", [{"op": "hflip"}], 256, seed=2, epoch=1)
                      if b.batch_index == 0)
    np.savez(tmp_path / "expected.npz", x=photos.numpy(), labels=labels.numpy(), augmented=local.x.numpy(),
             soft=local.labels.numpy(), augmented_unlabelled=Pipeline.from_spec(SPEC)(photos, seed=7).x.numpy(),
             normalized=Pipeline.from_spec(NORMALIZED)(photos, seed=1).x.numpy(), digits_first=digits.x)
    env = {**os.environ, "AUGSERVE_TARGET": server.target, "AUGSERVE_EXPECTED": str(tmp_path / "expected.npz"),
           "PYTHONPATH": ""}
    result = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
                             "--rootdir", str(CHECK.parent), "--confcutdir", str(CHECK.parent), str(CHECK)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"^9 passed", result.stdout, re.M), result.stdout[-2000:]  # none skipped


def test_the_command_line_says_what_a_client_only_install_lacks():
    python = _client_python()
    result = subprocess.run([str(python), "-m", "augserve.cli", "serve"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "pip install 'augserve[server]'" in result.stderr, result.stderr


@pytest.mark.parametrize("example", ["numpy_loop.py", "jax_loop.py"])
def test_the_numpy_and_jax_examples_learn_in_the_client_only_environment(server, example):
    result = subprocess.run([str(_client_python()), str(REPO / "clients" / example), "--target", server.target,
                             "--epochs", "3"], capture_output=True, text=True, timeout=600, env={**os.environ,
                                                                                                "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [float(v) for v in re.findall(r"train loss ([0-9.]+) over \d+ samples", result.stdout)]
    assert len(losses) == 3 and losses[2] < losses[1] < losses[0] and losses[2] < 0.8 * losses[0], result.stdout
