"""Train a small CNN on scikit-learn's digits; a DataLoader loads uint8 images, the server augments them.

    augserve serve &                       # or make serve
    python clients/train_remote_augment.py --target 127.0.0.1:50051 --epochs 5

The DataLoader's workers only load; RandAugment and mixup/cutmix run on the augserve server, with
`prefetch` batches in flight. Keys are the dataset indices (IndexedDataset), so a rerun replays.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from augserve.client import Client, IndexedDataset, RemoteAugment

PIPELINE = [{"op": "rand_augment", "n": 2, "m": 7},
            {"op": "mix", "mixup_alpha": 0.2, "cutmix_alpha": 1.0}]


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return torch.from_numpy(images), torch.from_numpy(data.target).long()


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051", help="server address(es), comma-separated")
    parser.add_argument("--epochs", type=int, default=5, help="passes over the training images")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (they only load)")
    parser.add_argument("--seed", type=int, default=0, help="augmentation seed: the same seed replays the run")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, y = digits()
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, generator=torch.Generator().manual_seed(args.seed))
    model = small_cnn().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    with Client(args.target) as client:
        batches = RemoteAugment(loader, client, PIPELINE, seed=args.seed, num_classes=10, out_dtype="float32",
                                device=device)
        for epoch in range(args.epochs):
            total, count = 0.0, 0
            for images, soft_labels in batches:  # float32 in [0, 1] (out_dtype), soft labels (B, 10)
                loss = torch.sum(-soft_labels * torch.log_softmax(model(images), dim=1), dim=1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, count = total + loss.item() * len(images), count + len(images)
            print(f"epoch {epoch}: train loss {total / count:.4f} over {count} samples")


if __name__ == "__main__":
    main()
