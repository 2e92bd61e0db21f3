"""Load generator: concurrent clients send batches for a while; prints throughput and latency percentiles.

    python clients/loadgen.py --target 127.0.0.1:50051 --clients 8 --batch 8 --seconds 20

Each client is an asyncio task with its own ``AsyncClient`` (own connection). Exit status 1 if
any call failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import numpy as np
import torch

from augserve.client import AsyncClient, ServerError


async def one_client(target: str, x: torch.Tensor, args, stop_at: float, latencies: list, errors: list) -> None:
    async with AsyncClient(target, timeout=args.timeout) as client:
        sent = 0
        while time.monotonic() < stop_at and (not args.requests or sent < args.requests):
            started = time.perf_counter()
            try:
                await client.augment(x, pipeline=args.pipeline, seed=sent)
                latencies.append(time.perf_counter() - started)
            except ServerError as error:
                errors.append(error.code.name)
            sent += 1


async def run(args) -> dict:
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    latencies: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    stop_at = started + args.seconds
    await asyncio.gather(*(one_client(args.target, x, args, stop_at, latencies, errors) for _ in range(args.clients)))
    elapsed = time.monotonic() - started
    ms = np.array(latencies) * 1000.0 if latencies else np.zeros(1)
    return {"clients": args.clients, "batch": args.batch, "size": args.size, "seconds": round(elapsed, 3),
            "requests": len(latencies), "errors": len(errors), "error_codes": sorted(set(errors)),
            "samples_per_s": round(len(latencies) * args.batch / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051", help="address(es), comma-separated, or dns:///")
    parser.add_argument("--pipeline", default="imagenet-randaug", help="preset, timm string or JSON steps")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, each its own channel")
    parser.add_argument("--batch", type=int, default=8, help="images per request")
    parser.add_argument("--size", type=int, default=224, help="image height and width")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each client sends")
    parser.add_argument("--requests", type=int, default=0, help="stop each client after this many (0: no limit)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>14}: {value}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
