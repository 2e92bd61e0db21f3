"""The augserve command, run as a user runs it: a real subprocess."""

import json
import subprocess
import sys

import pytest
from PIL import Image


def augserve(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "augserve.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_every_command():
    result = augserve("--help")
    assert result.returncode == 0
    for command in ("serve", "health", "preview", "bench", "pipelines"):
        assert command in result.stdout


def test_unknown_command_is_a_usage_error():
    assert augserve("dance").returncode == 2


def test_pipelines_lists_presets_that_compile():
    from augserve import Pipeline

    result = augserve("pipelines", "--json")
    assert result.returncode == 0
    presets = json.loads(result.stdout)
    assert "imagenet-randaug" in presets
    for steps in presets.values():
        Pipeline.from_spec(steps)


def test_preview_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    result = augserve("preview", "--pipeline", "imagenet-trivial", "--versions", "3", "--size", "96",
                      "--out", str(out))
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.width > 300 and image.height > 300


@pytest.mark.parametrize("pipeline, extra", [
    ("specaugment-LD", []),
    ("timeseries-um", ["--dataset", "basic_motions"]),
    ('{"modality": "timeseries", "steps": [{"op": "window_warp"}, {"op": "mixup"}]}', []),
    ('[{"op": "log_mel"}, {"op": "freq_mask", "F": 15}, {"op": "time_mask", "T": 70}]', []),  # raw audio in
])
def test_preview_draws_spectrograms_and_series(tmp_path, pipeline, extra):
    out = tmp_path / "grid.png"
    result = augserve("preview", "--pipeline", pipeline, "--versions", "2", "--out", str(out), *extra)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.width > 300 and image.height > 300


def test_preview_from_a_folder_and_a_spec_file(tmp_path, photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, photo in enumerate(photos[:2]):
        Image.fromarray(photo.permute(1, 2, 0).numpy()).save(folder / f"p{i}.png")
    spec = tmp_path / "pipe.yaml"
    spec.write_text("- op: rand_augment\n  n: 1\n  m: 12\n")
    out = tmp_path / "grid.png"
    result = augserve("preview", "--pipeline", f"@{spec}", "--images", str(folder), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 10_000


@pytest.mark.parametrize("args, words", [
    (["preview", "--pipeline", "nope"], "unknown preset 'nope'"),
    (["preview", "--images", "/no/such/folder"], "not a folder"),
    (["preview", "--pipeline", '[{"op": "hflip", "p": 7}]'], "field 'p'"),
    (["preview", "--pipeline", "timeseries-um", "--dataset", "mnist"], "--dataset: expected one of"),
])
def test_preview_errors_exit_2_with_a_message(args, words, tmp_path):
    result = augserve(*args, "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2 and words in result.stderr


def test_serve_documents_flags_and_env_and_refuses_a_missing_device():
    result = augserve("serve", "--help")
    assert result.returncode == 0
    for flag in ("--port", "--metrics-port", "--device", "--max-batch", "--token", "--tls-cert", "AUGSERVE_PORT"):
        assert flag in result.stdout
    refused = augserve("serve", "--device", "cuda:7", "--port", "0", "--metrics-port", "0", timeout=120)
    assert refused.returncode == 2 and "--device" in refused.stderr


def test_bench_prints_ratios_against_torchvision(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n\nHand-written notes stay.\n")
    result = augserve("bench", "--batch", "4", "--size", "32", "--repeats", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "Hand-written notes stay." in text
    for row in ("torchvision.v2 per-sample | ", "kornia.augmentation.auto batched", "| augserve |"):
        assert row in text
    assert "1.00x" in text
    service = augserve("bench", "--batch", "4", "--size", "32", "--repeats", "1", "--only", "service")
    assert service.returncode == 0, service.stderr
    assert "shared memory" in service.stdout and "RandAugment" not in service.stdout
    nothing = augserve("bench", "--only", "no such case")
    assert nothing.returncode == 2 and "no case name contains" in nothing.stderr


def test_allocator_tuning_applies_on_glibc():
    from augserve.runtime import keep_freed_memory

    assert keep_freed_memory() is True  # this project's machines run glibc


def test_health_exits_zero_only_when_serving():
    from server_harness import RunningServer, free_port

    running = RunningServer(metrics_port=0)
    try:
        for service in ("", "augserve.v1.Augmentation"):
            result = augserve("health", "--target", running.target, "--service", service, timeout=60)
            assert result.returncode == 0 and "SERVING" in result.stdout
        unknown = augserve("health", "--target", running.target, "--service", "no.Such", timeout=60)
        assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    finally:
        running.stop()
    down = augserve("health", "--target", f"127.0.0.1:{free_port()}", "--timeout", "1", timeout=60)
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr
