"""A trainer on a network host of its own (``augserve.tools.cluster``), for the multi-host tests and bench.

It streams an epoch (``dataset``), maps batches on one stream (``map``) or sends them one call each
(``unary``) through ``augserve.client`` and prints one JSON line per batch it gets, then
``{"done": ...}``, or ``{"error": ...}`` and exit status 1. ``--pace`` seconds between batches keep
the epoch long enough for a fault to land in its middle; failovers are logged on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time

import numpy as np

from augserve.client import Client, ServerError


def _say(**fields) -> None:
    print(json.dumps(fields), flush=True)


def _digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _map_batches(count: int, size: int):
    generator = np.random.default_rng(0)
    for _ in range(count):
        yield generator.integers(0, 256, (size, 3, 48, 48), dtype=np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("dataset", "map", "unary"))
    parser.add_argument("--target", required=True)
    parser.add_argument("--dataset", default="photos")
    parser.add_argument("--pipeline", default="rand-m9-n2")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=40, help="map: how many batches to send")
    parser.add_argument("--shard-index", type=int, default=0)
    parser.add_argument("--num-shards", type=int, default=1)
    parser.add_argument("--pace", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--tenant", default=None)
    parser.add_argument("--bytes", action="store_true", help="gRPC bytes even on the replica's host (no shared memory)")
    args = parser.parse_args()
    logging.basicConfig(format="%(created).3f %(name)s %(message)s")  # failovers, on stderr
    client = Client(args.target, timeout=args.timeout, tenant=args.tenant, shared_memory=False if args.bytes else None)
    try:
        if args.mode == "dataset":
            batches = client.stream_dataset(args.dataset, args.pipeline, args.batch_size, epoch=1, seed=3,
                                            shard_index=args.shard_index, num_shards=args.num_shards)
            for batch in batches:
                _say(batch=batch.batch_index, indices=batch.indices.tolist(), digest=_digest(batch.x), at=time.time())
                time.sleep(args.pace)
        elif args.mode == "unary":  # one call per batch: each call goes to a replica of gRPC's round robin
            for position, x in enumerate(_map_batches(args.batches, args.batch_size)):
                batch = client.augment(x, pipeline=args.pipeline, seed=5, keys=np.arange(len(x)))
                _say(batch=position, digest=_digest(batch.x), at=time.time())
                time.sleep(args.pace)
        else:
            answers = client.map(_map_batches(args.batches, args.batch_size), pipeline=args.pipeline, seed=5,
                                 prefetch=4)
            for position, batch in enumerate(answers):
                _say(batch=position, request_id=batch.request_id, digest=_digest(batch.x), at=time.time())
                time.sleep(args.pace)
    except ServerError as error:
        _say(error=type(error).__name__, code=error.code.name, message=str(error), at=time.time())
        return 1
    _say(done=True, at=time.time())
    return 0


if __name__ == "__main__":
    sys.exit(main())
