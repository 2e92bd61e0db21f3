"""Per-column statistics of a table, read by name by tabular steps (``feature_noise`` scales its noise by a
column's std, ``feature_mask`` fills with its mean): a served table's, computed once when it is read, or
registered in process. A batch's own statistics change with the batch, so steps use them only when asked."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from augserve import device_constants
from augserve.named import Named


@dataclass(frozen=True, eq=False)
class ColumnStats:
    name: str
    mean: torch.Tensor  # (F,) float32 on the CPU
    std: torch.Tensor  # (F,) float32, population std (ddof 0)
    categorical: tuple[int, ...] = ()  # columns holding category codes: never noised
    token: int = field(default_factory=itertools.count().__next__)  # names its device copies (ids are reused)

    @property
    def columns(self) -> int:
        return self.mean.shape[0]

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The means and stds on ``device``, copied there once."""
        return (device_constants.cached(device, ("column means", self.token), lambda: self.mean.to(device)),
                device_constants.cached(device, ("column stds", self.token), lambda: self.std.to(device)))


def of_rows(name: str, rows: Any, categorical: tuple[int, ...] = ()) -> ColumnStats:
    """The statistics of ``rows`` (N, F): finite numbers, at least one row."""
    x = torch.as_tensor(np.asarray(rows) if not isinstance(rows, torch.Tensor) else rows)
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"table {name!r}: expected rows (N, F) with N, F >= 1, got shape {tuple(x.shape)}")
    x = x.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"table {name!r}: rows hold NaN or infinity")
    if any(not 0 <= c < x.shape[1] for c in categorical):
        raise ValueError(f"table {name!r}: categorical columns {list(categorical)} must lie in [0, {x.shape[1]})")
    return ColumnStats(name, x.mean(0).to(torch.float32), x.std(0, correction=0).to(torch.float32),
                       tuple(sorted(set(categorical))))


_TABLES: Named[ColumnStats] = Named("table", "register rows with augserve.table_stats.register(name, rows), or "
                                             "serve a table of that name")
declare, known, unknown_message, get = _TABLES.declare, _TABLES.known, _TABLES.unknown_message, _TABLES.get


def register(name: str, rows: Any, categorical: tuple[int, ...] = ()) -> ColumnStats:
    """Make the statistics of ``rows`` the table ``name``'s for the steps of this process."""
    return _TABLES.put(name, of_rows(name, rows, categorical))
