"""AugMix: torchvision's ``AugMix`` and timm's ``AugMixAugment``, each run with augserve's draws
(their own mixing code, their own ops), reproduce augserve's batched output; the weights are honest."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torchvision.transforms.v2._auto_augment as tv_auto
from scipy import stats
from torchvision.transforms import v2

from augserve import Pipeline
from augserve.ops import policies
from augserve.random import Draw, SampleRng
from test_timm_policies import _pil, _tensor, timm_op

timm_aa = pytest.importorskip("timm.data.auto_augment")

TV_NAMES = {"shear_x": "ShearX", "shear_y": "ShearY", "translate_x": "TranslateX", "translate_y": "TranslateY",
            "rotate": "Rotate", "posterize": "Posterize", "solarize": "Solarize", "autocontrast": "AutoContrast",
            "equalize": "Equalize", "brightness": "Brightness", "color": "Color", "contrast": "Contrast",
            "sharpness": "Sharpness"}


def _scripted_torch(script: list):
    """torch, except that randint and rand return the next scripted value (torchvision's AugMix draws)."""
    shim = types.SimpleNamespace(**{name: getattr(torch, name) for name in dir(torch) if not name.startswith("__")})
    shim.randint = lambda *args, **kwargs: torch.tensor(script.pop(0))
    shim.rand = lambda *args, **kwargs: torch.tensor(script.pop(0))
    return shim


def _bin_of(name: str, value: float, severity: int, height: int, width: int) -> int:
    """The magnitude bin whose torchvision value is this one (translations are truncated by torchvision)."""
    table, _ = v2.AugMix._AUGMENTATION_SPACE[TV_NAMES[name]]
    values = table(10, height, width)
    exact = [int(float(v)) if name.startswith("translate") else float(v) for v in values[:severity]]
    return next(k for k, v in enumerate(exact) if v == abs(value))


@pytest.mark.parametrize("layout", ["uint8", "float"])
def test_torchvision_augmix_reproduces_ours_given_our_draws(photos, monkeypatch, layout):
    x = photos.repeat(2, 1, 1, 1) if layout == "uint8" else photos.repeat(2, 1, 1, 1).float() / 255
    step = {"op": "augmix", "severity": 4, "mixture_width": 3, "chain_depth": 2}
    out = Pipeline.from_spec([step])(x, seed=7)
    params = out.params[0]
    height, width = x.shape[-2:]
    for s in range(x.shape[0]):
        chain_ops = [params["space"][op] for op in params["ops"][s].flatten().tolist()]
        script = []
        for name, value in zip(chain_ops, params["values"][s].flatten().tolist()):
            if name not in ("autocontrast", "equalize"):
                script.append(_bin_of(name, value, 4, height, width))
                if name not in ("posterize", "solarize"):
                    script.append(0.0 if value < 0 else 1.0)  # torchvision negates when rand() <= 0.5
        monkeypatch.setattr(tv_auto, "torch", _scripted_torch(script))
        transform = v2.AugMix(severity=4, mixture_width=3, chain_depth=2)
        names = iter(TV_NAMES[name] for name in chain_ops)
        monkeypatch.setattr(transform, "_get_random_item",
                            lambda space: (key := next(names), space[key]))
        augmented = float(params["augmented"][s])
        weights = iter([torch.tensor([[1.0 - augmented, augmented]]),
                        params["chain_weights"][s:s + 1].to(torch.float32)])
        monkeypatch.setattr(transform, "_sample_dirichlet", lambda _: next(weights))
        theirs = transform(x[s])
        assert not script
        tolerance = 1 if layout == "uint8" else 1 / 255  # float32 products of the weights, then truncation
        difference = (out.x[s].double() - theirs.double()).abs()
        assert difference.gt(tolerance).double().mean() < 0.002  # bilinear warps: the fill edge (ops tests)


@pytest.mark.parametrize("blended", [False, True])
def test_timm_augmix_reproduces_ours_given_our_draws(photos, monkeypatch, blended):
    x = photos.repeat(2, 1, 1, 1)
    step = {"op": "timm_augmix", "m": 5, "w": 3, "d": -1, "b": blended, "interpolation": "nearest"}
    out = Pipeline.from_spec([step])(x, seed=3)  # interpolation: compared op by op in test_timm_policies
    params = out.params[0]
    depths = (params["ops"] >= 0).sum(-1)
    assert set(depths.flatten().tolist()) == {1, 2, 3}
    for s in range(x.shape[0]):
        chains = []
        for c in range(3):
            layers = range(int(depths[s, c]))
            chains.append([lambda image, op=int(params["ops"][s, c, t]), t=t, c=c: timm_op(
                image, params["space"][op], float(params["values"][s, c, t])) for t in layers])
        scripted = iter(chains)
        monkeypatch.setattr(timm_aa.np.random, "randint", lambda *a, **k: 0)  # depth: the scripted chain's
        monkeypatch.setattr(timm_aa.np.random, "choice", lambda *a, **k: next(scripted))
        augmix = timm_aa.AugMixAugment(ops=[], alpha=1.0, width=3, depth=-1, blended=blended)
        weights = params["chain_weights"][s].numpy().astype(np.float32)
        m = np.float32(params["augmented"][s])
        mix = augmix._apply_blended if blended else augmix._apply_basic
        theirs = _tensor(mix(_pil(x[s]), weights, m))
        difference = (out.x[s].float() - theirs.float()).abs()
        assert (difference > 2).float().mean() < 0.002  # PIL's grey mean and luma rounding in enhance ops


class _Weights(Draw):
    GAMMA = 0


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_mixing_weights_are_dirichlet_and_beta(alpha):
    rng = SampleRng(0, torch.arange(20_000))
    weights = rng.dirichlet(_Weights.GAMMA, alpha, 3)
    assert torch.allclose(weights.sum(1), torch.ones(20_000, dtype=torch.float64))
    # a Dirichlet(alpha, alpha, alpha) marginal is Beta(alpha, 2 alpha)
    assert stats.kstest(weights[:, 0].numpy(), stats.beta(alpha, 2 * alpha).cdf).pvalue > 1e-3


def test_augmix_chain_weights_depths_and_share(photos):
    out = Pipeline.from_spec([{"op": "augmix", "mixture_width": 4, "alpha": 1.0}])(
        photos.repeat(250, 1, 1, 1)[:, :, :8, :8].contiguous(), seed=0)
    params = out.params[0]
    assert torch.allclose(params["chain_weights"].sum(1), torch.ones(1000, dtype=torch.float64))
    assert stats.kstest(params["augmented"].numpy(), "uniform").pvalue > 1e-3  # Beta(1, 1)
    depths = (params["ops"] >= 0).sum(-1).flatten()
    assert stats.chisquare(torch.bincount(depths, minlength=4)[1:].numpy()).pvalue > 1e-3


def test_augmix_space_is_torchvisions():
    assert [TV_NAMES[op.name] for op in policies.AUGMIX_SPACE] == list(v2.AugMix._AUGMENTATION_SPACE)
    assert [TV_NAMES[op.name] for op in policies.AUGMIX_SPACE[:policies.AUGMIX_PARTIAL_OPS]] == \
        list(v2.AugMix._PARTIAL_AUGMENTATION_SPACE)
