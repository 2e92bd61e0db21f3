"""The runnable programs in clients/, as a user runs them, against a real server on loopback."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from ddp_checks import assert_even_ranks_cover_the_epoch
from server_harness import RunningServer, free_port

CLIENTS = pathlib.Path(__file__).resolve().parents[1] / "clients"


@pytest.fixture(scope="module")
def server():
    running = RunningServer(metrics_port=0)
    yield running
    running.stop()


def run(*args, timeout=300):
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_training_loop_with_remote_augment_learns(server):
    out = run(str(CLIENTS / "train_remote_augment.py"), "--target", server.target, "--epochs", "3")
    losses = [float(v) for v in re.findall(r"train loss ([0-9.]+) over 1797 samples", out)]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_torchrun_two_ranks_two_workers_stay_in_step_and_cover_each_epoch(server, tmp_path):
    run("-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
        str(CLIENTS / "remote_dataset_ddp.py"), "--target", server.target, "--epochs", "2", "--workers", "2",
        "--ids-out", str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert_even_ranks_cover_the_epoch(ranks, 2, shards=4, batch_size=32)


def test_load_generator_reports_throughput_and_percentiles(server):
    report = json.loads(run(str(CLIENTS / "loadgen.py"), "--target", server.target, "--clients", "3", "--requests", "4",
                            "--size", "32", "--seconds", "60", "--json"))
    assert report["requests"] == 12 and report["errors"] == 0 and report["samples_per_s"] > 0
    assert 0 < report["p50_ms"] <= report["p90_ms"] <= report["p99_ms"]


@pytest.mark.parametrize("program", sorted(path.name for path in CLIENTS.glob("*.py")))
def test_every_program_explains_itself_with_its_defaults(program, tmp_path):
    """``--help`` names every default, and needs nothing the program only uses to run (jax_loop: JAX)."""
    missing = tmp_path / "jax"
    missing.mkdir()
    (missing / "__init__.py").write_text("raise ImportError('JAX is not installed')\n")
    result = subprocess.run([sys.executable, str(CLIENTS / program), "--help"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    options = re.findall(r"^  (--[\w-]+)", result.stdout, re.MULTILINE)
    described = re.sub(r"\s+", " ", result.stdout)
    assert options and described.count("(default:") >= len(options) - 1  # all but --help
