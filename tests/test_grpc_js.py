"""A grpc-js client (protobufjs, as Node users have it) reads the server's answers as the Python client does.

protobufjs keeps only the last occurrence of a message field where protobuf says to merge them, so this
catches wire layouts that only Python's parser reads right. Needs node and npm (the packages are pinned in
tests/grpc_js/package-lock.json and installed there on first run).
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from augserve.client import Client
from server_harness import RunningServer

HERE = pathlib.Path(__file__).parent / "grpc_js"
PIPELINE, SEED = "rand-m9-n2", 3
X = np.random.default_rng(0).integers(0, 256, (8, 3, 128, 128), dtype=np.uint8)  # 192 KiB a request: framed
LABELS = np.arange(4, dtype=np.int64)
# waveforms with valid lengths, through a step that changes them: 128 KB a request (framed)
WAVES = np.random.default_rng(1).normal(0, 0.1, (8, 4000)).astype(np.float32)
WAVE_LENGTHS = np.array([4000, 3000, 2000, 1000, 4000, 3500, 2500, 1500])
WAVE_SPEC = [{"op": "speed", "factors": [0.9, 1.1], "p": 1.0}, {"op": "noise", "color": "pink", "p": 0.5}]
# sentences as UTF-8 bytes, read back as strings: whitespace words keep their accents
SENTENCES = ["Le café était très bon ce matin", "Der Bär schläft im Wald", "naïve façade déjà vu again"]
TEXT_SPEC = {"modality": "text", "tokenizer": "whitespace", "steps": [{"op": "random_swap", "alpha": 0.5}]}


def _tensor(array: np.ndarray) -> dict:
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def _request(x: np.ndarray, keys: range, request_id: int, **fields) -> dict:
    return {"pipeline": {"name": PIPELINE}, "seed": SEED, "x": _tensor(x), "keys": list(keys),
            "request_id": request_id, **fields}


def _described(array: np.ndarray | None) -> dict | None:
    if array is None:
        return None
    return {"dtype": array.dtype.name, "shape": list(array.shape), "bytes": array.nbytes,
            "sha256": hashlib.sha256(np.ascontiguousarray(array)).hexdigest()}


def _answer(batch) -> dict:
    lengths = [] if batch.lengths is None else batch.lengths.tolist()  # protobuf's empty repeated field
    texts = batch.x if isinstance(batch.x, list) else []
    return {"x": None if texts else _described(batch.x), "labels": _described(batch.labels), "lengths": lengths,
            "texts": texts}


def _node() -> str:
    """The node binary, the pinned packages installed beside the client."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm must be on PATH: this test runs a grpc-js client (tests/grpc_js)")
    if not (HERE / "node_modules").is_dir():
        install = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                                 timeout=300)
        assert install.returncode == 0, f"npm ci in {HERE} failed:\n{install.stderr}"
    return node


@pytest.fixture(scope="module")
def answers():
    """(what the grpc-js client got, what the Python client got) for the same requests."""
    node = _node()
    server = RunningServer(metrics_port=0)
    try:
        plan = {"augment": _request(X[:4], range(4), 1, labels=_tensor(LABELS), num_classes=10),
                "stream": [_request(X[:4], range(4), 1), _request(X[4:], range(4, 8), 2)],
                "dataset": {"dataset": "digits", "pipeline": {"name": PIPELINE}, "batch_size": 128, "seed": SEED},
                "waveform": {"pipeline": {"spec": json.dumps(WAVE_SPEC)}, "seed": SEED, "x": _tensor(WAVES),
                             "lengths": WAVE_LENGTHS.tolist()},
                "texts": {"pipeline": {"spec": json.dumps(TEXT_SPEC)}, "seed": SEED, "keys": [5, 6, 7],
                          "texts": [base64.b64encode(s.encode()).decode() for s in SENTENCES]}}
        run = subprocess.run([node, str(HERE / "client.js"), server.target], input=json.dumps(plan),
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"the grpc-js client failed:\n{run.stderr}"
        with Client(server.target, timeout=60, shared_memory=False) as client:
            python = {
                "augment": _answer(client.augment(X[:4], LABELS, pipeline=PIPELINE, seed=SEED, keys=range(4),
                                                  num_classes=10)),
                "stream": [_answer(client.augment(X[:4], pipeline=PIPELINE, seed=SEED, keys=range(4))),
                           _answer(client.augment(X[4:], pipeline=PIPELINE, seed=SEED, keys=range(4, 8)))],
                "dataset": [{"batch_index": b.batch_index, "sample_indices": b.indices.tolist(), **_answer(b)}
                            for b in client.stream_dataset("digits", PIPELINE, 128, seed=SEED)],
                "waveform": _answer(client.augment(WAVES, pipeline=WAVE_SPEC, seed=SEED, lengths=WAVE_LENGTHS)),
                "texts": _answer(client.augment(texts=SENTENCES, pipeline=TEXT_SPEC, seed=SEED, keys=[5, 6, 7]))}
    finally:
        server.stop()
    return json.loads(run.stdout), python


def test_augment_answers_read_the_same(answers):
    node, python = answers
    assert python["augment"]["x"]["shape"] == [4, 3, 128, 128] and python["augment"]["labels"]["shape"] == [4, 10]
    assert node["augment"] == python["augment"]


def test_augment_stream_answers_read_the_same(answers):
    node, python = answers
    assert node["stream"] == python["stream"]


def test_dataset_batches_read_the_same(answers):
    node, python = answers
    assert len(python["dataset"]) == 15  # 1,797 digits in batches of 128
    assert node["dataset"] == python["dataset"]


def test_waveform_answers_read_the_same_with_their_lengths(answers):
    node, python = answers
    assert python["waveform"]["x"]["shape"] == [8, 4000] and python["waveform"]["x"]["dtype"] == "float32"
    assert python["waveform"]["lengths"] != WAVE_LENGTHS.tolist()  # speed changed them
    assert node["waveform"] == python["waveform"]


def test_text_answers_read_the_same_as_strings(answers):
    node, python = answers
    assert python["texts"]["x"] is None and python["texts"]["texts"] != SENTENCES  # swapped, accents kept
    assert sorted(" ".join(python["texts"]["texts"]).split()) == sorted(" ".join(SENTENCES).lower().split())
    assert node["texts"] == python["texts"]
