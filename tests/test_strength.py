"""``strength``: one number that scales every magnitude of a pipeline (0: identity, 1: as specified).

In process (``Pipeline.at_strength``) and on the wire (``PipelineRef.strength``): strength 0 leaves
every sample as it came, strength 1 is the pipeline bit for bit, samples replay from
(seed, key, strength), and what cannot be scaled is refused by name.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2.functional import to_dtype

from augserve import Pipeline
from augserve.spec import SpecError
from augserve.steps import STEPS
from test_golden_replay import MODEL_OPS, OP_SPECS, TEXT_OP_SPECS, _input

UNSCALABLE = {"trivial_augment", "auto_augment", "timm_auto_augment", "augmix", "timm_augmix"}
LABELS = torch.tensor([0, 1, 2, 1])


def _run(pipeline: Pipeline, seed: int = 3, keys=(0, 1, 2, 3)):
    modality = pipeline.modality or "image"
    return pipeline(_input(modality), LABELS, seed=seed, keys=torch.tensor(keys), num_classes=3)


def test_every_op_is_either_scaled_or_refused_by_name():
    assert set(OP_SPECS) | set(TEXT_OP_SPECS) | MODEL_OPS == set(STEPS)
    for op, spec in {**OP_SPECS, **TEXT_OP_SPECS}.items():
        pipeline = Pipeline.from_spec([{"op": op, **spec}])
        if op in UNSCALABLE:
            with pytest.raises(SpecError, match=rf"step 1 \({op}\): strength 0.5: {op} has no magnitude"):
                pipeline.at_strength(0.5)
        else:
            pipeline.at_strength(0.5)


@pytest.mark.parametrize("op", sorted(set(OP_SPECS) - UNSCALABLE))
def test_strength_zero_is_the_identity(op):
    """Shape-keeping steps hand every sample back unchanged (labels too); a step that resizes or converts
    keeps only its deterministic part: what it returns no longer depends on the seed."""
    pipeline = Pipeline.from_spec([{"op": op, **OP_SPECS[op]}]).at_strength(0)
    out, other = _run(pipeline), _run(pipeline, seed=11, keys=(5, 6, 7, 8))
    torch.testing.assert_close(out.x, other.x, rtol=0, atol=0)
    torch.testing.assert_close(out.labels, torch.nn.functional.one_hot(LABELS, 3).float(), rtol=0, atol=0)
    x = _input(pipeline.modality or "image")
    if out.x.shape == x.shape and op != "normalize":
        assert torch.equal(to_dtype(out.x, x.dtype, scale=True), x), op  # mixing steps hand uint8 back as float


def test_strength_one_is_the_pipeline_itself_and_other_strengths_are_new_specs():
    pipeline = Pipeline.from_spec("timeseries-um")
    assert pipeline.at_strength(1) is pipeline and pipeline.at_strength(1.0) is pipeline
    half = pipeline.at_strength(0.5)
    assert half.strength == 0.5 and pipeline.strength == 1.0
    rebuilt = Pipeline.from_spec(half.to_spec())  # the scaled spec is a plain spec: it replays without strength
    torch.testing.assert_close(_run(rebuilt).x, _run(half).x, rtol=0, atol=0)


def test_magnitudes_move_towards_neutral_and_beyond():
    steps = [{"op": "random_affine", "degrees": 20, "translate": [0.1, 0.2], "scale": [0.8, 1.25]},
             {"op": "color_jitter", "brightness": 0.4, "p": 0.8}, {"op": "posterize", "bits": 4},
             {"op": "hflip", "p": 0.4}, {"op": "rand_augment", "n": 2, "m": 9}]
    half = {s["op"]: s for s in Pipeline.from_spec(steps).at_strength(0.5).to_spec()["steps"]}
    double = {s["op"]: s for s in Pipeline.from_spec(steps).at_strength(2).to_spec()["steps"]}
    assert half["random_affine"]["degrees"] == [-10, 10] and half["random_affine"]["translate"] == [0.05, 0.1]
    assert half["random_affine"]["scale"] == pytest.approx([0.8 ** 0.5, 1.25 ** 0.5])  # zoom scales geometrically
    assert half["color_jitter"]["brightness"] == pytest.approx([0.8, 1.2]) and half["color_jitter"]["p"] == 0.8
    assert half["posterize"]["bits"] == 6 and half["hflip"]["p"] == 0.2 and (half["rand_augment"]["n"],
                                                                            half["rand_augment"]["m"]) == (1, 4.5)
    assert double["random_affine"]["degrees"] == [-40, 40] and double["posterize"]["bits"] == 0
    assert double["hflip"]["p"] == 0.5 and double["color_jitter"]["brightness"] == pytest.approx([0.2, 1.8])


@pytest.mark.parametrize("op", ["hflip", "vflip"])
def test_a_stronger_flip_varies_more_but_never_mirrors_most_samples(op):
    def p(given: float, strength: float) -> float:
        return Pipeline.from_spec([{"op": op, "p": given}]).at_strength(strength).to_spec()["steps"][0]["p"]

    assert (p(0.2, 2), p(0.4, 2), p(0.5, 2), p(0.5, 10), p(0.5, 0.5)) == (0.4, 0.5, 0.5, 0.5, 0.25)
    assert p(0.8, 2) == 0.8 and p(0.8, 0.5) == 0.4  # a p given above 0.5 is kept, never raised
    flipped = Pipeline.from_spec([{"op": op}]).at_strength(2)(torch.zeros(400, 1, 2, 2, dtype=torch.uint8), seed=0)
    share = float(flipped.params[0]["applied"].float().mean())
    assert flipped.params[0]["applied"].any() and 0.4 < share < 0.6, share


def test_effect_grows_with_strength():
    series = _input("timeseries")
    change = [float((_run(Pipeline.from_spec("timeseries-um").at_strength(s)).x - series).abs().mean())
              for s in (0, 0.25, 0.5, 1, 2)]
    assert change[0] == 0 and all(a < b for a, b in zip(change, change[1:])), change


def test_a_sample_replays_from_seed_key_and_strength_in_any_batch():
    pipeline = Pipeline.from_spec("timeseries-um").at_strength(0.7)
    alone = _run(pipeline, keys=(0, 1, 2, 3)).x
    shuffled = pipeline(_input("timeseries")[[2, 0, 3, 1]], LABELS[[2, 0, 3, 1]], seed=3,
                        keys=torch.tensor([2, 0, 3, 1]), num_classes=3).x
    torch.testing.assert_close(shuffled, alone[[2, 0, 3, 1]], rtol=0, atol=0)
    assert not torch.equal(alone, _run(Pipeline.from_spec("timeseries-um")).x)


@pytest.mark.parametrize("strength", [-0.1, 10.5, float("nan"), float("inf"), True, "1"])
def test_out_of_range_strength_is_refused(strength):
    with pytest.raises(SpecError, match=r"strength: expected a number in \[0, 10\]"):
        Pipeline.from_spec("timeseries-um").at_strength(strength)


def test_a_strength_that_takes_a_field_out_of_range_names_it():
    with pytest.raises(SpecError, match=r"strength 4: step 1 \(rand_augment\): field 'm'"):
        Pipeline.from_spec([{"op": "rand_augment", "m": 9}]).at_strength(4)
