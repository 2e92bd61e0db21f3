"""A NumPy-only training loop: your own uint8 arrays, augmented on the server, a softmax classifier in numpy.

    pip install augserve                   # the client alone: grpcio, protobuf, numpy (no torch)
    python clients/numpy_loop.py --target 127.0.0.1:50051 --epochs 5

`Client.map` keeps `prefetch` batches in flight; numpy in gives numpy out. The pipeline ends in a
normalize step that the client runs itself (`defer_normalize=True`): uint8 crosses the wire.
"""

from __future__ import annotations

import argparse

import numpy as np

from augserve.client import Client

PIPELINE = [{"op": "hflip"}, {"op": "random_crop", "size": 16, "padding": 2},
            {"op": "color_jitter", "brightness": 0.3, "contrast": 0.3},
            {"op": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}]


def colour_blobs(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """16x16 RGB images, one dominant channel per class (3 classes), with noise."""
    labels = rng.integers(0, 3, count)
    images = rng.integers(0, 120, (count, 3, 16, 16))
    images[np.arange(count), labels] += 30  # a faint cue: the classifier needs a few epochs
    return images.astype(np.uint8), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051", help="server address(es), comma-separated")
    parser.add_argument("--epochs", type=int, default=5, help="passes over the served dataset")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per batch")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images, labels = colour_blobs(1024, rng)
    weights = np.zeros((3 * 16 * 16, 3), np.float32)
    with Client(args.target) as client:
        for epoch in range(args.epochs):
            order = rng.permutation(len(images))
            chunks = np.array_split(order, len(order) // args.batch_size)
            batches = ((images[i], labels[i], i + (epoch << 32)) for i in chunks)  # keys: index and epoch
            total, seen = 0.0, 0
            for batch in client.map(batches, pipeline=PIPELINE, seed=1, num_classes=3, defer_normalize=True):
                x = batch.normalized().x.reshape(len(batch.x), -1)  # float32, normalized here
                y = batch.labels.argmax(axis=1)  # one-hot rows: nothing mixes labels in this pipeline
                logits = x @ weights
                logits -= logits.max(axis=1, keepdims=True)
                probs = np.exp(logits)
                probs /= probs.sum(axis=1, keepdims=True)
                total += float(-np.log(probs[np.arange(len(y)), y] + 1e-9).sum())
                seen += len(y)
                probs[np.arange(len(y)), y] -= 1.0
                weights -= args.lr * (x.T @ probs) / len(y)
            print(f"epoch {epoch}: train loss {total / seen:.4f} over {seen} samples", flush=True)


if __name__ == "__main__":
    main()
