"""The client as a training job without torch sees it: run by tests/test_client_only.py in a virtualenv
that has only `pip install augserve[jax]`, against a server from the main environment.

The expected arrays come from the main environment (the in-process pipeline) in $AUGSERVE_EXPECTED (.npz).
"""

import asyncio
import importlib
import os

import numpy as np
import pytest

from augserve.client import AsyncClient, Client, InvalidArgument

TARGET = os.environ["AUGSERVE_TARGET"]
EXPECTED = np.load(os.environ["AUGSERVE_EXPECTED"])  # plain arrays: no pickle
SPEC = '[{"op": "hflip"}, {"op": "rand_augment", "n": 2, "m": 9}]'
DIGITS_SPEC = '[{"op": "hflip"}]'
NORMALIZED = '[{"op": "hflip"}, {"op": "normalize", "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}]'


@pytest.fixture(scope="module")
def client():
    with Client(TARGET) as client:
        yield client


def test_no_torch_here():
    with pytest.raises(ImportError):
        importlib.import_module("torch")


def test_augment_numpy_in_numpy_out_equals_the_in_process_pipeline(client):
    batch = client.augment(EXPECTED["x"], EXPECTED["labels"], pipeline=SPEC, seed=7, num_classes=4)
    assert isinstance(batch.x, np.ndarray) and batch.x.dtype == np.uint8
    assert np.array_equal(batch.x, EXPECTED["augmented"]) and np.array_equal(batch.labels, EXPECTED["soft"])
    assert batch.x.flags.writeable  # same host: the answer came back in this client's shared memory


def test_map_replays_the_same_samples_in_two_halves(client):
    halves = [(EXPECTED["x"][:3], EXPECTED["labels"][:3]), (EXPECTED["x"][3:], EXPECTED["labels"][3:])]
    out = [b.x.copy() for b in client.map(halves, pipeline=SPEC, seed=7, num_classes=4, prefetch=2)]
    assert np.array_equal(np.concatenate(out), EXPECTED["augmented"])


def test_a_deferred_normalize_applied_here_equals_the_servers_bit_for_bit(client):
    uint8 = client.augment(EXPECTED["x"], pipeline=NORMALIZED, seed=1, defer_normalize=True)
    assert uint8.x.dtype == np.uint8 and uint8.normalize is not None
    assert np.array_equal(uint8.normalized().x, EXPECTED["normalized"])
    assert client.augment(EXPECTED["x"], pipeline=NORMALIZED, seed=1).x.dtype == np.float32


def test_stream_dataset_delivers_the_epoch(client):
    batches = list(client.stream_dataset("digits", DIGITS_SPEC, 256, seed=2, epoch=1))
    indices = np.concatenate([b.indices for b in batches])
    assert sorted(indices.tolist()) == list(range(1797))
    first = next(b for b in batches if b.batch_index == 0)
    assert np.array_equal(first.x, EXPECTED["digits_first"])


def test_errors_are_server_errors_naming_the_field(client):
    with pytest.raises(InvalidArgument, match="op"):
        client.augment(EXPECTED["x"], pipeline='[{"op": "no_such_op"}]')
    assert np.array_equal(client.augment(EXPECTED["x"], pipeline=SPEC, seed=7).x, EXPECTED["augmented_unlabelled"])


def test_the_async_client_too():
    async def run():
        async with AsyncClient(TARGET) as client:
            return (await client.augment(EXPECTED["x"], pipeline=SPEC, seed=7)).x

    assert np.array_equal(asyncio.run(run()), EXPECTED["augmented_unlabelled"])


def test_torch_adapters_say_which_extra_to_install():
    import augserve.client

    with pytest.raises(ImportError, match=r"pip install 'augserve\[torch\]'"):
        augserve.client.RemoteAugment


def test_jax_batches_land_on_the_device_normalized_there(client):
    import jax

    from augserve.client import device_put_batches

    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    batches = (client.augment(EXPECTED["x"], pipeline=NORMALIZED, seed=1, defer_normalize=True) for _ in range(3))
    placed = list(device_put_batches(batches, device=jax.devices()[0], prefetch=2))
    assert len(placed) == 3 and all(isinstance(x, jax.Array) and x.dtype == np.float32 for x, _ in placed)
    np.testing.assert_allclose(np.asarray(placed[0][0]), EXPECTED["normalized"], rtol=0, atol=1e-5)
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))
    batch = client.augment(EXPECTED["x"], EXPECTED["labels"], pipeline=SPEC, seed=7, num_classes=4)
    (x, labels), = device_put_batches([batch], sharding=sharding)
    assert x.sharding == sharding and labels.sharding == sharding  # split along the batch over the mesh
    assert np.array_equal(np.asarray(x), EXPECTED["augmented"]) and np.array_equal(np.asarray(labels), EXPECTED["soft"])
