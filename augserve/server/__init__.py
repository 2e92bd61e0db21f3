"""The gRPC augmentation server: servicer, dynamic batcher, device worker, datasets, auth, metrics."""
