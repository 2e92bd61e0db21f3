"""Small models for the built-in experiments: digits (8x8 grayscale, 10 classes) and UCR series."""

from __future__ import annotations

from torch import nn


def small_cnn(dropout: float = 0.0, num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(dropout), nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(128, num_classes))


def small_mlp(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, num_classes))


def fcn(channels: int, num_classes: int, width: int = 32, dropout: float = 0.0) -> nn.Module:
    """The fully convolutional network of Wang et al. (2017) for (N, C, T) series: three conv-BN-ReLU
    blocks (kernels 8, 5, 3; ``width``, 2 * ``width``, ``width`` filters; 128 in the paper), global
    average pooling, then (dropout and) a linear classifier."""
    layers: list[nn.Module] = []
    for c_in, c_out, kernel in ((channels, width, 8), (width, 2 * width, 5), (2 * width, width, 3)):
        layers += [nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.BatchNorm1d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(width, num_classes))
