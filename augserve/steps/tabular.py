"""Tabular steps for float (B, F) batches: Gaussian feature noise, feature masking (VIME) and swap noise
(Jahrer's denoising autoencoder), per sample and per entry, replayable by (seed, key).

Columns named ``categorical`` hold category codes: they are never noised, and a masked one only ever takes a
value of the same column (``fill: marginal`` and ``swap_noise``; ``zero`` and ``mean`` have no such value, so
they leave those columns alone). Column statistics come from a table named in the spec (``stats``, see
``augserve.table_stats``), from the spec itself (``std``, ``mean``), or from the batch only when asked
(``batch_stats: true``: they then change with the batch). Steps that read other rows (marginal fill, swap
noise, the batch's own statistics) mix samples: the server never merges two requests for them, and a sample
replays with its request, as mixup's do. docs/pipelines.md says where augserve differs from VIME's and the
DAE's reference code, and why.
"""

from __future__ import annotations

import torch

from augserve import device_constants, table_stats
from augserve.modality import Modality
from augserve.ops import tabular
from augserve.random import Draw
from augserve.spec import Choice, ColumnValues, Columns, Flag, Name, Number, SpecError
from augserve.steps.base import GATE, Params, Step, register

_STATS = Name(None, doc="a table whose column statistics the step reads (served, or table_stats.register)")
_BATCH_STATS = Flag(False, doc="the batch's own column statistics instead (they change with the batch)")
_CATEGORICAL = Columns(None, doc="columns of category codes, never noised, masked only with their own "
                                 "column's values (default: the stats table's)")


class TableStep(Step):
    """A step on (B, F) tables: reads column statistics by name, keeps categorical columns whole."""

    modalities = (Modality.TABULAR,)

    def check_sources(self, what: str, sources: tuple[str, ...], needed: bool = True, unread: str = "") -> None:
        """Exactly one of the fields ``sources`` gives the per-column ``what`` (std or mean) when ``needed``,
        none when not (``unread`` says why); a table named in ``stats`` must be known."""
        given = [name for name in sources if self.args[name] not in (None, False)]
        if given and not needed:
            raise SpecError(f"{self.where}: field '{given[0]}' gives a column {what}, which this step does not "
                            f"read ({unread})")
        if needed and not given:
            raise SpecError(f"{self.where}: no column {what}: give field 'stats' (a table's name), field "
                            f"'{what}' (one per column), or 'batch_stats': true (the batch's own {what}, "
                            "which changes with the batch)")
        if len(given) > 1:
            raise SpecError(f"{self.where}: fields '{given[0]}' and '{given[1]}' both give the column {what}: "
                            "give exactly one")
        name = self.args.get("stats")
        if name is not None and not table_stats.known(name):
            raise SpecError(f"{self.where}: field 'stats': {table_stats.unknown_message(name)}")

    def table(self) -> table_stats.ColumnStats | None:
        """The statistics named by ``stats`` (read the first time a served table is needed), or None."""
        name = self.args.get("stats")
        if name is None:
            return None
        try:
            return table_stats.get(name)
        except KeyError:
            raise ValueError(f"{self.where}: field 'stats': {table_stats.unknown_message(name)}") from None

    def categorical(self) -> tuple[int, ...]:
        """The categorical columns: the spec's, else its stats table's, else none."""
        given = self.args.get("categorical")
        if given is not None:
            return given
        table = self.table()
        return table.categorical if table is not None else ()

    def output_shape(self, shape):
        if len(shape) != 2:
            raise ValueError(f"{self.where}: expected a table {Modality.TABULAR.layout}, got shape {shape}")
        columns = shape[1]
        table = self.table()
        if table is not None and table.columns != columns:
            raise ValueError(f"{self.where}: field 'stats': table {table.name!r} has {table.columns} columns but "
                             f"the batch has {columns}: send rows of that table, or name the table they come from")
        for column in self.categorical():  # a table's own are in its range: checked when it was made
            if column >= columns:
                raise ValueError(f"{self.where}: field 'categorical': column {column} is out of range for a batch "
                                 f"of {columns} column{'s' * (columns != 1)} (0 to {columns - 1})")
        for name, field in self.fields.items():
            values = self.args[name]
            if isinstance(field, ColumnValues) and values is not None and len(values) != columns:
                raise ValueError(f"{self.where}: field '{name}' has {len(values)} values (one per column) but the "
                                 f"batch has {columns} columns: give {columns}")
        return shape

    def continuous(self, columns: int, device: torch.device) -> torch.Tensor:
        """(F,) bool: the columns that are not categorical (on the host, where draws are made)."""
        keep = torch.ones(columns, dtype=torch.bool, device=device)
        categorical = self.categorical()
        if categorical:
            keep[list(categorical)] = False
        return keep

    def column_statistic(self, x: torch.Tensor, field: str) -> torch.Tensor:
        """The per-column ``field`` ("std" or "mean") on ``x``'s device, from the step's one source."""
        table = self.table()
        if table is not None:
            means, stds = table.on(x.device)
            return stds if field == "std" else means
        if self.args.get(field) is not None:
            return device_constants.on(x.device, self.args[field], torch.float32)
        return tabular.column_stds(x) if field == "std" else tabular.column_means(x)


def _row_partners(rng, draw: Draw, mask: torch.Tensor) -> Params:
    """Per masked entry, a uniformly drawn other row of the request (from the sample's own stream): the
    ``mask`` (cleared for a batch of 1, which has no other row), each entry's source row (``partner``), and
    for a batch of 1 a ``note`` for the caller."""
    samples, columns = mask.shape
    if samples < 2:
        return {"mask": torch.zeros_like(mask), "partner": torch.zeros_like(mask, dtype=torch.int64),
                "note": "batch of 1: no other row to take values from; sample unchanged"}
    partner = tabular.other_rows(rng.pixel_uniform(draw, (columns,)))
    return {"mask": mask, "partner": tabular.sources(mask, partner)}


@register
class FeatureNoise(TableStep):
    """x_j + N(0, (sigma * std_j)^2) on every continuous column j of a sample, applied with probability ``p``;
    std_j from a table (``stats``), the spec (``std``) or the batch (``batch_stats``): exactly one."""

    class Draw(Draw):
        NOISE_RADIUS = 0
        NOISE_ANGLE = 1
        APPLIED = 8

    op = "feature_noise"
    fields = {
        "sigma": Number(0.1, low=0.0, high=100.0, neutral=0.0, doc="noise std as a fraction of each column's std"),
        "p": GATE,
        "stats": _STATS,
        "std": ColumnValues(None, low=0.0, high=1e30, doc="each column's std (one per column)"),
        "batch_stats": _BATCH_STATS,
        "categorical": _CATEGORICAL,
    }

    def check(self):
        self.check_sources("std", ("stats", "std", "batch_stats"))
        self.mixes_samples = self.args["batch_stats"]  # the batch's std reads every row

    def draw(self, rng, batch):
        columns = batch.shape[1]
        applied = rng.bernoulli(self.Draw.APPLIED, self.args["p"])
        noise = rng.pixel_normal(self.Draw.NOISE_RADIUS, self.Draw.NOISE_ANGLE, (columns,))
        noised = applied[:, None] & self.continuous(columns, batch.device)[None, :]
        return {"applied": applied, "_noise": noise, "_noised": noised}

    def apply(self, x, params):
        if self.args["sigma"] == 0:
            return x
        scale = self.column_statistic(x, "std") * self.args["sigma"]
        return tabular.add_noise(x, params["_noise"], scale, params["_noised"])


FILLS = ("zero", "mean", "marginal")


@register
class FeatureMask(TableStep):
    """Mask each entry with probability ``p`` and fill it: 0, the column's mean, or (VIME's pretext generator)
    the same column of another row of the request, drawn uniformly per entry; reports the ``mask``."""

    class Draw(Draw):
        MASK = 0
        PARTNER = 1

    op = "feature_mask"
    fields = {
        "p": Number(0.3, low=0.0, high=1.0, neutral=0.0, doc="probability that an entry is masked"),
        "fill": Choice("zero", options=FILLS, doc="what a masked entry takes; marginal: another row's value"),
        "stats": _STATS,
        "mean": ColumnValues(None, doc="each column's mean, for fill mean (one per column)"),
        "batch_stats": _BATCH_STATS,
        "categorical": _CATEGORICAL,
    }

    def check(self):
        fill = self.args["fill"]
        if fill == "mean":
            self.check_sources("mean", ("stats", "mean", "batch_stats"))
        else:  # 'stats' may still name the categorical columns
            self.check_sources("mean", ("mean", "batch_stats"), needed=False,
                               unread=f"fill {fill}; only fill mean reads a column mean")
        self.mixes_samples = fill == "marginal" or (fill == "mean" and self.args["batch_stats"])

    def draw(self, rng, batch):
        columns = batch.shape[1]
        mask = rng.pixel_uniform(self.Draw.MASK, (columns,)) < self.args["p"]
        if self.args["fill"] != "marginal":  # no value of a category column to give: those stay whole
            return {"mask": mask & self.continuous(columns, batch.device)[None, :]}
        return _row_partners(rng, self.Draw.PARTNER, mask)

    def apply(self, x, params):
        fill = self.args["fill"]
        if fill == "marginal":
            return tabular.take_rows(x, params["partner"])
        if fill == "zero":
            return tabular.fill(x, params["mask"], 0.0)
        return tabular.fill(x, params["mask"], self.column_statistic(x, "mean"))


@register
class SwapNoise(TableStep):
    """Replace each entry with probability ``p`` by the same column of another row of the request, drawn
    uniformly per entry (Jahrer's denoising autoencoder); category codes stay valid; reports the ``mask``."""

    class Draw(Draw):
        MASK = 0
        PARTNER = 1

    op = "swap_noise"
    mixes_samples = True
    fields = {"p": Number(0.15, low=0.0, high=1.0, neutral=0.0, doc="probability that an entry is swapped")}

    def draw(self, rng, batch):
        mask = rng.pixel_uniform(self.Draw.MASK, (batch.shape[1],)) < self.args["p"]
        return _row_partners(rng, self.Draw.PARTNER, mask)

    def apply(self, x, params):
        return tabular.take_rows(x, params["partner"])
