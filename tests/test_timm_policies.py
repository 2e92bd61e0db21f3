"""timm strings mean what timm means: its op sets, magnitude arithmetic, per-op probability and op
frequencies, checked against timm's own functions (``timm.data.auto_augment``) with augserve's draws."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from augserve import Pipeline
from augserve.ops import color
from augserve.spec import SpecError

timm_aa = pytest.importorskip("timm.data.auto_augment")

PIL_MODES = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)  # augserve's RANDOM_INTERPOLATIONS order
GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def timm_op(image: Image.Image, name: str, value: float, mode=Image.Resampling.NEAREST) -> Image.Image:
    """timm's own op function with augserve's drawn argument (GaussianBlurRand's radius is already drawn)."""
    function = timm_aa.NAME_TO_OP["GaussianBlur" if name == "GaussianBlurRand" else name]
    if timm_aa.LEVEL_TO_ARG[name] is None:
        return function(image, fillcolor=(124, 116, 104), resample=mode)
    whole = name.startswith(("Posterize", "Solarize"))  # timm passes these as ints
    if name.startswith("Posterize") and int(value) == 0:
        return image.point(lambda _: 0)  # what posterize(0) gave before Pillow 13 refused it
    return function(image, int(value) if whole else value, fillcolor=(124, 116, 104), resample=mode)


def replay_with_timm(images: torch.Tensor, params: dict) -> torch.Tensor:
    """Every sample through timm's op functions, with the ops, arguments and interpolations augserve drew."""
    out = []
    modes = params.get("interpolation")
    for s, image in enumerate(images):
        pil = _pil(image)
        for layer, op in enumerate(params["ops"][s].tolist()):
            if op >= 0:
                mode = Image.Resampling.NEAREST if modes is None else PIL_MODES[int(modes[s, layer])]
                pil = timm_op(pil, params["space"][op], params["values"][s, layer].item(), mode)
        out.append(_tensor(pil))
    return torch.stack(out)


def _differs(ours: torch.Tensor, theirs: torch.Tensor, levels: int) -> float:
    return (ours.int() - theirs.int()).abs().gt(levels).float().mean().item()


@pytest.mark.parametrize("text, expected", [
    ("rand-m9-mstd0.5-inc1", {"op": "timm_rand_augment", "m": 9, "n": 2, "p": 0.5, "mstd": 0.5, "inc": True}),
    ("rand-m7-n3-p0.3-mmax12", {"m": 7, "n": 3, "p": 0.3, "mmax": 12, "inc": False, "transforms": "default"}),
    ("rand-mstd101-tweights", {"m": 10, "mstd": float("inf"), "transforms": "weights"}),
    ("augmix-m5-w4-d2", {"op": "timm_augmix", "m": 5, "w": 4, "d": 2, "a": 1.0, "b": False,
                         "mstd": float("inf"), "translate_pct": 0.3}),
    ("augmix-m3-a0.5-b1-mstd0.5", {"a": 0.5, "b": True, "mstd": 0.5, "d": -1}),
    ("original-mstd0.5", {"op": "timm_auto_augment", "policy": "original", "mstd": 0.5}),
    ("v0r", {"policy": "v0r", "mstd": 0.0}), ("3a", {"policy": "3a"}),
])
def test_timm_strings_compile_to_timm_steps(text, expected):
    (step,) = Pipeline.from_spec(text).to_spec()["steps"]
    assert {k: step[k] for k in expected} == expected
    assert step.get("interpolation", "random") == "random" and step.get("fill", "img_mean") == "img_mean"


@pytest.mark.parametrize("text, words", [
    ("rand-m9.5", ["'m9.5'", "whole number"]), ("rand-tfoo", ["unknown op set 'foo'", "weights"]),
    ("rand-mstdinf", ["'mstdinf'", "mstdN"]), ("augmix-q1", ["'q1'", "augmix-m5-w4-d2"]),
    ("original-m3", ["'m3'", "mstdN"]), ("rand-n16-tweights", ["'n'", "at most 15"]),
])
def test_what_timm_rejects_or_skips_is_refused_with_the_reason(text, words):
    with pytest.raises(SpecError) as error:
        Pipeline.from_spec(text)
    assert all(word in str(error.value) for word in words), str(error.value)


def _blurred(params: dict) -> torch.Tensor:
    """Samples that went through a Gaussian blur: PIL's is a box-filter approximation, compared in mean."""
    names = [params["space"][op] if op >= 0 else "" for op in params["ops"].flatten().tolist()]
    return torch.tensor([name.startswith("GaussianBlur") for name in names]).view(params["ops"].shape).any(1)


def _assert_timms(ours: torch.Tensor, theirs: torch.Tensor, params: dict, fraction: float) -> None:
    blurred = _blurred(params)
    exact = ~blurred
    assert _differs(ours[exact], theirs[exact], 2) < fraction  # enhance ops: PIL rounds its grey mean and luma
    if blurred.any():
        assert (ours[blurred].float() - theirs[blurred].float()).abs().mean() < 1.0


@pytest.mark.parametrize("transforms, inc", [("default", False), ("default", True), ("3a", False)])
def test_each_op_is_timms_given_the_same_draws(photo_batch, transforms, inc):
    step = {"op": "timm_rand_augment", "m": 9, "n": 1, "p": 1.0, "mstd": 1.0, "inc": inc, "transforms": transforms,
            "interpolation": "nearest"}
    x = photo_batch.repeat(4, 1, 1, 1)
    out = Pipeline.from_spec([step])(x, seed=11)
    assert len(set(out.params[0]["ops"].flatten().tolist())) == len(out.params[0]["space"])  # every op ran
    theirs = replay_with_timm(x, out.params[0])
    for sample in torch.nonzero(~_blurred(out.params[0])).flatten().tolist():
        op = out.params[0]["space"][out.params[0]["ops"][sample, 0]]
        assert _differs(out.x[sample], theirs[sample], 2) < 0.002, op
    _assert_timms(out.x, theirs, out.params[0], 0.002)


@pytest.mark.parametrize("transforms", ["default", "weights", "3aw"])
def test_rand_augment_chains_are_timms_given_the_same_draws(photo_batch, transforms):
    """Two ops in turn: a one-level rounding difference of the first can cross a threshold of the second."""
    step = {"op": "timm_rand_augment", "m": 9, "n": 2, "p": 0.7, "mstd": 1.0, "transforms": transforms,
            "interpolation": "nearest"}
    x = photo_batch.repeat(2, 1, 1, 1)
    out = Pipeline.from_spec([step])(x, seed=11)
    _assert_timms(out.x, replay_with_timm(x, out.params[0]), out.params[0], 0.01)


@pytest.mark.parametrize("policy", ["original", "originalr", "v0", "v0r", "3a"])
def test_auto_augment_policies_are_timms_given_the_same_draws(photo_batch, policy):
    step = {"op": "timm_auto_augment", "policy": policy, "mstd": 0.5, "interpolation": "nearest"}
    x = photo_batch.repeat(2, 1, 1, 1)
    out = Pipeline.from_spec([step])(x, seed=4)
    _assert_timms(out.x, replay_with_timm(x, out.params[0]), out.params[0], 0.01)


def test_random_interpolation_is_drawn_per_op_call_and_matches_pils_modes(photo_batch):
    step = {"op": "timm_rand_augment", "m": 9, "n": 1, "p": 1.0, "transforms": "weights"}  # mostly geometric ops
    out = Pipeline.from_spec([step])(photo_batch.repeat(4, 1, 1, 1), seed=2)
    params = out.params[0]
    modes = params["interpolation"][:, 0]
    assert 0.25 < modes.float().mean().item() < 0.75
    theirs = replay_with_timm(photo_batch.repeat(4, 1, 1, 1), params)
    difference = (out.x.float() - theirs.float()).abs().mean(dim=(1, 2, 3))
    # bilinear: edge rounding; bicubic: torch's kernel has a = -0.75 (torchvision's tensor bicubic), PIL's -0.5
    assert difference[modes == 0].max() < 1.0 and difference[modes == 1].max() < 2.0


def _timm_calls(transform, images: int) -> list[tuple[str, tuple]]:
    """(op name, arguments) of every op timm's transform applies to ``images`` tiny images."""
    calls = []
    ops = transform.ops if hasattr(transform, "ops") else [op for sub in transform.policy for op in sub]
    for op in ops:
        original, name = op.aug_fn, op.name

        def record(image, *args, _original=original, _name=name, **kwargs):
            calls.append((_name, args))
            return image
        op.aug_fn = record
    image = Image.new("RGB", (8, 8))
    for _ in range(images):
        transform(image)
    return calls


@pytest.mark.parametrize("text", ["rand-m9-mstd0.5-inc1", "rand-m7-n3-p0.3-tweights", "rand-m9-n2-mstd101-t3aw"])
def test_op_frequencies_probability_and_magnitudes_follow_timm(text):
    """Statistical, fixed seeds: per-op applied frequency within 5 binomial sigmas of timm's, and the
    rotate angles' distribution indistinguishable from timm's (KS p > 1e-3)."""
    images = 4000
    random.seed(0)
    np.random.seed(0)
    calls = _timm_calls(timm_aa.rand_augment_transform(text, dict(timm_aa._HPARAMS_DEFAULT)), images)
    out = Pipeline.from_spec(text)(torch.zeros(images, 3, 8, 8, dtype=torch.uint8), seed=1)
    params = out.params[0]
    ours = [params["space"][op] for op in params["ops"].flatten().tolist() if op >= 0]
    layers = params["ops"].shape[1] * images
    applied_timm, applied_ours = len(calls) / layers, len(ours) / layers  # timm's p per op call
    assert abs(applied_ours - applied_timm) < 5 * np.sqrt(applied_timm * (1 - applied_timm) * 2 / layers)
    for name in set(params["space"]):
        p_timm = sum(1 for n, _ in calls if n == name) / layers
        p_ours = ours.count(name) / layers
        sigma = np.sqrt(max(p_timm * (1 - p_timm), 1e-4) * 2 / layers)
        assert abs(p_ours - p_timm) < 5 * sigma, (name, p_ours, p_timm)
    their_angles = [abs(args[0]) for n, args in calls if n == "Rotate"]
    rotate = params["space"].index("Rotate")
    our_angles = params["values"][params["ops"] == rotate].abs().numpy()
    assert stats.ks_2samp(their_angles, our_angles).pvalue > 1e-3


def test_timm_steps_replay_and_differ_per_sample(photo_batch):
    for text in ("rand-m9-mstd0.5-inc1", "original-mstd0.5", "augmix-m5-w3"):
        pipe = Pipeline.from_spec(text)
        keys = torch.arange(16) * 7
        full = pipe(photo_batch, seed=5, keys=keys).x
        assert torch.equal(pipe(photo_batch[[3, 9]], seed=5, keys=keys[[3, 9]]).x, full[[3, 9]])
        same_photo = full[::4]  # photo 0 with four different keys
        assert len({bytes(image.numpy().tobytes()) for image in same_photo}) == 4, text


def test_img_mean_fill_is_in_the_batchs_units(photos):
    step = {"op": "timm_rand_augment", "m": 10, "n": 1, "p": 1.0, "transforms": "3aw", "interpolation": "nearest"}
    pipe = Pipeline.from_spec([step])
    keys = torch.arange(64)
    as_uint8 = pipe(photos.repeat(16, 1, 1, 1), seed=0, keys=keys)
    as_float = pipe(photos.repeat(16, 1, 1, 1).float() / 255, seed=0, keys=keys)
    rotated = [s for s, op in enumerate(as_uint8.params[0]["ops"][:, 0].tolist())
               if as_uint8.params[0]["space"][op] == "Rotate"]
    corner = as_uint8.x[rotated, :, 0, 0].float()
    assert torch.equal(corner, torch.tensor([[124.0, 116.0, 104.0]]).expand_as(corner))
    assert torch.allclose(as_float.x[rotated, :, 0, 0] * 255, corner, atol=1e-3)


@pytest.mark.parametrize("add", [0, 1, 37, 110, 128])
def test_solarize_add_is_pils_bit_for_bit(photos, add):
    ours = color.solarize_add(photos, torch.full((len(photos),), float(add), dtype=torch.float64), 128.0)
    theirs = torch.stack([_tensor(timm_aa.solarize_add(_pil(image), add)) for image in photos])
    assert torch.equal(ours, theirs)
    assert torch.equal(color.solarize_add(photos.float() / 255, torch.full((len(photos),), add / 255), 128 / 255)
                       .mul(255).round().to(torch.uint8), theirs)


RAND_SECTIONS = ["m9", "m0", "m15", "m9.5", "n1", "n3", "p0.3", "p1", "mstd0.5", "mstd0", "mstd101", "mstdinf",
                 "mstd", "mmax10", "mmax0", "mmax12", "inc1", "inc0", "tweights", "t3a", "tfoo", "q1"]
AUGMIX_SECTIONS = ["m3", "m9", "w2", "w4", "d2", "d-1", "a0.5", "b1", "b0", "mstd0.5", "mstdinf", "mstd101", "x2"]


def _grammar(head: str, sections: list[str], count: int) -> list[str]:
    rng = random.Random(head)
    return [head] + ["-".join([head, *rng.sample(sections, rng.randint(1, 3))]) for _ in range(count)]


def _timm_reading(text: str):
    """What timm's own parser makes of a string, or None where it raises or skips a section."""
    import re

    hparams = {"translate_const": 100, "img_mean": (124, 116, 104)}
    sections = text.split("-")[1:]
    op_sets = [s[1:] for s in sections if text.startswith("rand") and s.startswith("t")]
    if any(len(re.split(r"(\d.*)", s)) < 2 for s in sections if s[1:] not in op_sets) or \
            any(name not in ("weights", "3a", "3aw") for name in op_sets):
        return None  # timm skips a section without a number or an unknown op set silently: augserve refuses it
    try:
        if text.startswith("rand"):
            t = timm_aa.rand_augment_transform(text, hparams)
            op = t.ops[0]
            return {"m": op.magnitude, "n": t.num_layers, "p": op.prob, "mstd": op.magnitude_std,
                    "mmax": op.magnitude_max, "ops": sorted(o.name for o in t.ops)}
        t = timm_aa.augment_and_mix_transform(text, hparams)
        return {"m": t.ops[0].magnitude, "mstd": t.ops[0].magnitude_std, "w": t.width, "d": t.depth,
                "a": t.alpha, "b": t.blended}
    except (AssertionError, ValueError, KeyError):
        return None


def _our_reading(text: str):
    try:
        pipeline = Pipeline.from_spec(text)
    except SpecError:
        return None
    (step,) = pipeline.to_spec()["steps"]
    if text.startswith("rand"):
        (params,) = pipeline(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), seed=0, keys=torch.arange(1)).params
        return {"m": step["m"], "n": step["n"], "p": step["p"], "mstd": step["mstd"],
                "mmax": step.get("mmax") if "mmax" in text else None, "ops": sorted(params["space"])}
    return {"m": step["m"], "mstd": step["mstd"], "w": step["w"], "d": step["d"], "a": step["a"], "b": step["b"]}


@pytest.mark.parametrize("text", _grammar("rand", RAND_SECTIONS, 60) + _grammar("augmix", AUGMIX_SECTIONS, 40))
def test_strings_are_accepted_and_read_as_timms_parser_reads_them(text):
    theirs, ours = _timm_reading(text), _our_reading(text)
    assert (theirs is None) == (ours is None), (text, theirs, ours)
    if theirs is not None:
        assert ours == theirs, text
