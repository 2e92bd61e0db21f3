"""Steps that mix samples and their labels: mixup, cutmix, their switch, label smoothing.

These work on every modality but waveforms: images paste boxes, spectrograms and time series
paste spans of the time axis, tables a random subset of columns (see ``augserve.ops.mix``).
Partners are chosen inside the request from its own seed and keys, so the same request mixes the
same way every time.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

from augserve.modality import BATCHES, Modality
from augserve.ops import grouping, mix, plan
from augserve.random import Draw
from augserve.spec import Choice, Flag, Interval, Number, SpecError
from augserve.steps.base import Params, Step, register

MODES = ("elem", "pair", "batch")
_ALPHA = dict(low=0.0, high=1e3, exclusive_low=True)
_NOT_MIXED, _MIXUP, _CUTMIX = 0, 1, 2


def _region_shape(shape: tuple[int, ...], modality: str) -> tuple[int, ...]:
    """Images paste boxes over (H, W); spectrograms and series paste spans of the time axis."""
    return tuple(shape[-2:]) if modality == "image" else tuple(shape[-1:])


@register
class Mix(Step):
    """timm's Mixup: mixup or cutmix per sample (``switch_prob``), applied with ``prob``.

    ``mode`` elem draws lambda, switch and box per sample; pair shares them within
    swapped pairs; batch draws one set for the whole request. With
    ``correct_lambda`` (default) a cutmix label weight is the pasted area exactly.
    """

    class Draw(Draw):
        ORDER = 0  # partners
        LAMBDA = 1
        SWITCH = 2  # mixup or cutmix
        APPLY = 3
        REGION = 4
        COLUMNS = 5  # tables: which columns cutmix pastes

    op = "mix"
    modalities = BATCHES
    mixes_samples = True
    fields = {
        "mixup_alpha": Number(0.8, low=0.0, high=1e3, doc="Beta(a, a) for mixup; 0 disables mixup"),
        "cutmix_alpha": Number(1.0, low=0.0, high=1e3, doc="Beta(a, a) for cutmix; 0 disables cutmix"),
        "cutmix_minmax": Interval(None, low=0.0, high=1.0,
                                  doc="box side (tables: share of columns) as a fraction, instead of alpha"),
        "prob": Number(1.0, low=0.0, high=1.0, neutral=0.0, doc="probability that a sample is mixed at all"),
        "switch_prob": Number(0.5, low=0.0, high=1.0, doc="probability of cutmix when both are on"),
        "mode": Choice("elem", options=MODES),
        "correct_lambda": Flag(True, doc="label weight = pasted area after clipping"),
    }

    def check(self):
        a = self.settings()
        if a["mixup_alpha"] == 0 and a["cutmix_alpha"] == 0 and a["cutmix_minmax"] is None:
            raise SpecError(f"{self.where}: fields 'mixup_alpha' and 'cutmix_alpha' are both 0: "
                            "expected at least one > 0 (or 'cutmix_minmax')")

    def settings(self) -> dict:
        """The full mix configuration; the mixup and cutmix steps fill in the other half."""
        return dict(self.args)

    def output_dtype(self, dtype):
        """Blends need float: a step that may blend (mixup) turns uint8 into float32; pasting alone keeps uint8."""
        return torch.float32 if dtype == torch.uint8 and self.settings()["mixup_alpha"] > 0 else dtype

    def draw(self, rng, batch):
        a = self.settings()
        samples, device = batch.shape[0], batch.device
        region_shape = _region_shape(batch.shape, batch.modality)
        order = torch.argsort(rng.bits(self.Draw.ORDER), stable=True)
        if a["mode"] == "pair":
            partner, leader = mix.pair_partners(order)
        else:
            partner = mix.cyclic_partners(order)
            leader = order[:1].expand(samples) if a["mode"] == "batch" else torch.arange(samples, device=device)

        u_lam, u_switch, u_apply = (rng.uniform(d)[leader] for d in (self.Draw.LAMBDA, self.Draw.SWITCH,
                                                                       self.Draw.APPLY))
        u_region = rng.uniform(self.Draw.REGION, n=4)[leader]
        use_cutmix = self._use_cutmix(u_switch, a)
        lam = torch.ones(samples, dtype=torch.float64, device=device)
        if a["mixup_alpha"] > 0:
            lam = torch.where(~use_cutmix, mix.beta_from_uniform(u_lam, a["mixup_alpha"]), lam)
        if a["cutmix_alpha"] > 0 and a["cutmix_minmax"] is None:
            lam = torch.where(use_cutmix, mix.beta_from_uniform(u_lam, a["cutmix_alpha"]), lam)
        mixed = (u_apply < a["prob"]) & (partner != torch.arange(samples, device=device))
        lam = torch.where(mixed, lam, torch.ones_like(lam))

        tabular = batch.modality == Modality.TABULAR
        if tabular:
            u_columns = rng.pixel_uniform(self.Draw.COLUMNS, (batch.shape[1],))[leader]
            regions, area_lam = mix.cut_columns(lam, batch.shape[1], u_columns, u_region, a["cutmix_minmax"])
        else:
            regions, area_lam = mix.cut_regions(lam, region_shape, u_region, a["cutmix_minmax"])
        if a["correct_lambda"] or a["cutmix_minmax"] is not None:
            lam = torch.where(use_cutmix & mixed, area_lam, lam)
        regions = torch.where((use_cutmix & mixed)[:, None], regions, torch.zeros_like(regions))
        kind = torch.where(mixed, torch.where(use_cutmix, _CUTMIX, _MIXUP), _NOT_MIXED)
        params: Params = {"partner": partner, "lam": lam.to(torch.float32), "cutmix": kind == _CUTMIX,
                          "mixed": kind != _NOT_MIXED, "columns" if tabular else "region": regions, "_lam": lam,
                          "_kind": kind}
        if samples == 1:
            params["note"] = "batch of 1: nothing to mix with; sample and label unchanged"
        elif a["mode"] == "pair" and samples % 2:
            params["note"] = f"odd batch in pair mode: sample {int(order[-1])} has no pair and is unchanged"
        return params

    def apply(self, x, params):
        if self.output_dtype(x.dtype) != x.dtype:  # the same dtype out whatever this batch drew
            x = TF.to_dtype(x, torch.float32, scale=True)
        blends = self.settings()["mixup_alpha"] > 0
        return self._mix_pixels(x, params, blends)

    def relabel(self, labels, params):
        return mix.mix_labels(labels, params["partner"], params["_lam"])

    @staticmethod
    def _use_cutmix(u_switch: torch.Tensor, a: dict) -> torch.Tensor:
        cutmix_on = a["cutmix_alpha"] > 0 or a["cutmix_minmax"] is not None
        if cutmix_on and a["mixup_alpha"] > 0:
            return u_switch < a["switch_prob"]
        return torch.full_like(u_switch, cutmix_on, dtype=torch.bool)

    @staticmethod
    def _pasted(x: torch.Tensor, params: Params) -> torch.Tensor:
        """Where each sample takes its partner's content under cutmix, broadcastable to ``x``: a table's
        drawn columns, or the region (starts, then lengths of the last axes) as a mask."""
        if "columns" in params:
            return params["columns"]
        region_shape = tuple(x.shape[-(params["region"].shape[1] // 2):])
        return mix.region_mask(params["region"], region_shape, x.dim())

    @classmethod
    def _mix_pixels(cls, x, params: Params, blends: bool):
        """lerp(partner, self, w) over the batch, tile by tile: w = lam for mixup samples and
        0 inside / 1 outside the pasted region for cutmix (lerp is exact at 0 and 1, so cutmix
        pixels are copies, and a sample left alone is itself). The grouped plan skips what this batch
        did not draw; branch-free, only what the step cannot draw (``blends``: mixup is on) is skipped."""
        kind, partner, lam = params["_kind"], params["partner"], params["_lam"]
        branch_free = plan.is_branch_free()
        if not branch_free and not bool((kind != _NOT_MIXED).any()):
            return x
        pasted = cls._pasted(x, params)
        if not blends or (not branch_free and not bool((kind == _MIXUP).any())):
            return mix.cutmix(x, x.index_select(0, partner), pasted)  # pasting keeps uint8 as uint8
        # own-content weight: lam for mixup, 1 outside / 0 inside the box for cutmix, 1 when unmixed
        weight = torch.where(kind == _CUTMIX, torch.ones_like(lam), lam).to(x.dtype)
        weight = weight.view(-1, *([1] * (x.dim() - 1)))
        # an unmixed sample blends with itself: lerp(x, x, 1) is x to the bit (-0.0 included)
        source = torch.where(kind == _NOT_MIXED, torch.arange(len(partner), device=partner.device), partner)
        out = torch.empty_like(x)
        for part in grouping.tiles(x):  # source rows land in the output tile, then blend in place
            torch.index_select(x, 0, source[part], out=out[part])
            tile_weight = torch.where(pasted[part], torch.zeros_like(weight[part]), weight[part])
            out[part].lerp_(x[part], tile_weight)
        return out


@register
class MixUp(Mix):
    """Mixup alone (Zhang et al. 2018)."""

    op = "mixup"
    fields = {
        "alpha": Number(1.0, **_ALPHA, doc="lambda ~ Beta(alpha, alpha)"),
        "p": Number(1.0, low=0.0, high=1.0, neutral=0.0, doc="probability that a sample is mixed at all"),
        "mode": Choice("elem", options=MODES),
    }

    def settings(self):
        return {"mixup_alpha": self.args["alpha"], "cutmix_alpha": 0.0, "cutmix_minmax": None,
                "prob": self.args["p"], "switch_prob": 0.0, "mode": self.args["mode"], "correct_lambda": True}


@register
class CutMix(Mix):
    """CutMix alone (Yun et al. 2019)."""

    op = "cutmix"
    fields = {
        "alpha": Number(1.0, **_ALPHA, doc="lambda ~ Beta(alpha, alpha)"),
        "minmax": Interval(None, low=0.0, high=1.0,
                           doc="box side (tables: share of columns) as a fraction, instead of alpha"),
        "p": Number(1.0, low=0.0, high=1.0, neutral=0.0, doc="probability that a sample is mixed at all"),
        "mode": Choice("elem", options=MODES),
        "correct_lambda": Flag(True),
    }

    def settings(self):
        return {"mixup_alpha": 0.0, "cutmix_alpha": self.args["alpha"], "cutmix_minmax": self.args["minmax"],
                "prob": self.args["p"], "switch_prob": 1.0, "mode": self.args["mode"],
                "correct_lambda": self.args["correct_lambda"]}


@register
class LabelSmoothing(Step):
    """(1 - epsilon) * y + epsilon / K, once; the caller sees it in ``out.params``."""

    op = "label_smoothing"
    draws_nothing = True
    modalities = (*BATCHES, Modality.TEXT)
    fields = {"epsilon": Number(0.1, low=0.0, high=1.0, exclusive_high=True, neutral=0.0,
                                doc="mass spread evenly over the K classes")}

    def draw(self, rng, batch):
        return {"epsilon": self.args["epsilon"]}

    def apply(self, x, params):
        return x

    def relabel(self, labels, params):
        return mix.smooth_labels(labels, self.args["epsilon"])

