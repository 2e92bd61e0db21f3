"""Shared decode: streams of the same served files with other seeds or pipelines decode each file once while
the window keeps it, and get bit for bit what they get alone; the window's bytes stay bounded; a file that
fails to decode is still named in each stream's own answer."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from augserve.client import Client
from augserve.encoded.window import DecodedWindow
from augserve.photos import write_imagenet_like_jpegs
from server_harness import RunningServer

SPEC = [{"op": "random_resized_crop", "size": 48}, {"op": "hflip"}, {"op": "rand_augment", "n": 2, "m": 9}]
OTHER_SPEC = [{"op": "random_resized_crop", "size": 32, "scale": [0.5, 1.0]}, {"op": "vflip"}]
FILES, BATCH = 24, 8


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """JPEGs of ImageNet-like sizes, and in place of one a PNG whose header is fine and whose body is not
    (it fails only when decoded)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("decode")
    write_imagenet_like_jpegs(root, count=FILES, classes=2, seed=5)
    broken = sorted(root.rglob("*.jpg"))[7]
    Image.open(broken).save(broken.with_suffix(".png"))
    png = broken.with_suffix(".png").read_bytes()
    broken.with_suffix(".png").write_bytes(png[:60] + bytes(len(png) - 72) + png[-12:])
    broken.unlink()
    return root


def _server(folder, **overrides) -> RunningServer:
    return RunningServer(datasets={"jpegs": {"type": "folder", "path": str(folder)}}, max_batch=64, **overrides)


def _epoch(target: str, seed: int, spec=SPEC) -> tuple[dict[int, bytes], dict[int, str]]:
    samples, skipped = {}, {}
    with Client(target, shared_memory=False) as client:
        for batch in client.stream_dataset("jpegs", spec, BATCH, seed=seed, epoch=2):
            samples.update((i, np.ascontiguousarray(x).tobytes()) for i, x in zip(batch.indices.tolist(), batch.x))
            skipped.update(batch.skipped)
    return samples, skipped


def _together(target: str, runs: list[dict]) -> list:
    results = [None] * len(runs)
    threads = [threading.Thread(target=lambda i=i, run=run: results.__setitem__(i, _epoch(target, **run)))
               for i, run in enumerate(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def _decoded(server) -> dict[str, float]:
    registry = server.server.metrics.registry
    return {outcome: registry.get_sample_value("augserve_decoded_images_total", {"outcome": outcome}) or 0.0
            for outcome in ("decoded", "shared")}


RUNS = [{"seed": 1}, {"seed": 2}, {"seed": 3, "spec": OTHER_SPEC}]


@pytest.fixture(scope="module")
def alone(folder):
    """Each run's epoch from a server that shares no decode."""
    server = _server(folder, decoded_window_bytes=0, shared_epoch_bytes=0)
    try:
        return [_epoch(server.target, **run) for run in RUNS]
    finally:
        server.stop()


def test_streams_with_other_seeds_and_pipelines_decode_each_file_once_and_get_what_they_get_alone(folder, alone):
    server = _server(folder)
    try:
        together = _together(server.target, RUNS)
        assert together == alone
        for samples, skipped in together:
            assert len(samples) == FILES - 1 and len(skipped) == 1 and "corrupt png" in next(iter(skipped.values()))
        counts = _decoded(server)
        assert counts["decoded"] == FILES - 1  # every good file once: the window holds them all
        # every other read came from the window (more: the batch that met the bad file ran again without it)
        assert counts["shared"] >= len(RUNS) * (FILES - 1) - counts["decoded"]
        assert [_epoch(server.target, **RUNS[0])] == alone[:1]  # later, from the window alone
        assert _decoded(server)["decoded"] == FILES - 1
    finally:
        server.stop()


def test_the_window_is_bounded_and_what_falls_out_is_decoded_again(folder, alone):
    largest = 3 * 500 * 640  # no photo here is larger
    server = _server(folder, decoded_window_bytes=2 * largest)
    try:
        assert [_epoch(server.target, **run) for run in RUNS[:2]] == alone[:2]
        registry = server.server.metrics.registry
        assert 0 < registry.get_sample_value("augserve_decoded_window_bytes") <= 2 * largest
        assert _decoded(server)["decoded"] > 1.5 * (FILES - 1)  # most files were decoded again
    finally:
        server.stop()


def test_a_file_being_decoded_is_decoded_once_for_every_thread_that_asks():
    window, calls = DecodedWindow(1 << 20), []

    def decode():
        calls.append(1)
        time.sleep(0.2)  # the others ask while it is being decoded
        return torch.zeros(3, 4, 4, dtype=torch.uint8)

    got = [None] * 8
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, window.pixels("a", decode))) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(calls) == 1 and all(pixels is got[0] for pixels in got)


def test_a_failed_decode_is_not_kept_and_the_least_recently_asked_go_first():
    outcomes = []
    window = DecodedWindow(2 * 48, outcomes.append)
    image = lambda value: lambda: torch.full((3, 4, 4), value, dtype=torch.uint8)  # noqa: E731 - 48 bytes each

    def broken():
        raise ValueError("corrupt")

    with pytest.raises(ValueError):
        window.pixels("bad", broken)
    with pytest.raises(ValueError):
        window.pixels("bad", broken)  # tried again, not answered from a kept failure
    window.pixels("a", image(1))
    window.pixels("b", image(2))
    assert int(window.pixels("a", image(9))[0, 0, 0]) == 1  # kept: "b" is now the least recently asked
    window.pixels("c", image(3))  # over the bound: "b" goes
    assert window.nbytes == 2 * 48
    assert int(window.pixels("b", image(7))[0, 0, 0]) == 7  # decoded again, and "a" goes
    assert int(window.pixels("c", image(8))[0, 0, 0]) == 3
    assert outcomes == ["decoded", "decoded", "shared", "decoded", "decoded", "shared"]
