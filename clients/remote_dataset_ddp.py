"""Data-parallel training on a dataset the server reads: every rank and worker streams its own shard.

    augserve serve &
    torchrun --nproc-per-node 2 clients/remote_dataset_ddp.py --target 127.0.0.1:50051 --epochs 3

RemoteDataset shards by rank and DataLoader worker, so each sample of an epoch reaches one of
them, and gives every shard the same number of batches (the epoch padded with a few of its first
samples, fewer than there are shards, as DistributedSampler pads), so the ranks' all-reduces stay
in step to the end of each epoch. A replica that goes away mid-epoch costs a failover, not a sample.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from augserve.client import Client, RemoteDataset


class GreyPool(nn.Module):
    """Mean over channels, then average-pooled to ``size`` x ``size``: one input width for every image dataset."""

    def __init__(self, size: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x.mean(dim=1, keepdim=True))


def classifier(classes: int) -> nn.Module:
    """A small MLP over 8x8 grey thumbnails, the same initial weights on every rank."""
    torch.manual_seed(0)
    return nn.Sequential(GreyPool(8), nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051", help="server address(es), comma-separated, or dns:///")
    parser.add_argument("--dataset", default="digits", help="a dataset the server serves")
    parser.add_argument("--pipeline", default="rand-m7-n2", help="preset, timm string or JSON steps")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the dataset")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per batch on each rank")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    parser.add_argument("--ids-out", help="folder to write each rank's delivered sample ids to (JSON)")
    args = parser.parse_args()

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank()
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
    client = Client(args.target)
    remote = RemoteDataset(client, args.dataset, args.pipeline, args.batch_size, seed=0)
    model = optimizer = None  # built on the first batch, whose soft labels give the class count
    delivered: dict[int, dict] = {}
    for epoch in range(args.epochs):
        remote.set_epoch(epoch)
        ids, batches, total, count = [], 0, 0.0, 0
        for batch in DataLoader(remote, batch_size=None, num_workers=args.workers,
                                multiprocessing_context="forkserver" if args.workers else None):
            batch = batch.to(device, non_blocking=True)
            if model is None:
                model = DistributedDataParallel(classifier(batch.labels.shape[1]).to(device))
                optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
            loss = torch.sum(-batch.labels * torch.log_softmax(model(batch.x.float() / 255.0), dim=1), dim=1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            ids += batch.indices.tolist()
            batches += 1
            total, count = total + loss.item() * len(batch.x), count + len(batch.x)
        delivered[epoch] = {"ids": ids, "batches": batches}
        print(f"rank {rank} epoch {epoch}: loss {total / max(count, 1):.4f} over {count} samples", flush=True)
    if args.ids_out:
        pathlib.Path(args.ids_out, f"rank{rank}.json").write_text(json.dumps(delivered))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
