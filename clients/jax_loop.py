"""A JAX training loop over a dataset the server reads and augments: batches land on the JAX device.

    pip install "augserve[jax]"            # the client and JAX; no torch
    python clients/jax_loop.py --target 127.0.0.1:50051 --epochs 5

`stream_dataset` streams the served `digits` (shard k of N per host with --shard), augmented there;
`device_put_batches` places each batch on the device (or a sharding) two batches ahead, and runs the
pipeline's final normalize there (uint8 on the wire and the bus).
"""

from __future__ import annotations

import argparse

PIPELINE = [{"op": "random_affine", "degrees": 10, "translate": [0.1, 0.1]},
            {"op": "normalize", "mean": [0.25], "std": [0.35]}]


def train(args: argparse.Namespace) -> None:
    import jax  # here, not at the top: --help works without JAX installed
    import jax.numpy as jnp

    from augserve.client import Client, device_put_batches

    def loss_fn(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        logits = x.reshape(len(x), -1) @ params["w"] + params["b"]
        return -(jax.nn.log_softmax(logits) * y).sum(axis=1).mean()  # y: the server's soft labels

    @jax.jit
    def step(params: dict, x: jax.Array, y: jax.Array, lr: float) -> tuple[dict, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss

    params = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
    with Client(args.target) as client:
        for epoch in range(args.epochs):
            batches = client.stream_dataset("digits", PIPELINE, args.batch_size, epoch=epoch, seed=0,
                                            shard_index=args.shard[0], num_shards=args.shard[1], defer_normalize=True)
            losses, seen = [], 0
            for x, y in device_put_batches(batches, device=jax.devices()[0], prefetch=2):
                params, loss = step(params, x, y, args.lr)
                losses.append(loss * len(x))
                seen += len(x)
            print(f"epoch {epoch}: train loss {float(sum(losses)) / seen:.4f} over {seen} samples", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051", help="server address(es), comma-separated")
    parser.add_argument("--epochs", type=int, default=5, help="passes over the served dataset")
    parser.add_argument("--batch-size", type=int, default=128, help="samples per batch")
    parser.add_argument("--lr", type=float, default=0.5, help="SGD learning rate")
    parser.add_argument("--shard", type=int, nargs=2, default=(0, 1), metavar=("INDEX", "COUNT"),
                        help="this host's shard of each epoch (jax.process_index(), jax.process_count())")
    train(parser.parse_args())


if __name__ == "__main__":
    main()
