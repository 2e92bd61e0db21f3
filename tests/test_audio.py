"""SpecAugment on spectrograms: masks within their bounds, per sample, and a warp that keeps its ends."""

import pytest
import torch

from augserve import PRESETS, Pipeline, SpecError
from augserve.preview import synthetic_spectrograms


@pytest.fixture(scope="module")
def spectrograms():
    """(12, 80, 601) standardized log spectrograms of harmonic sweeps, four copies of three."""
    specs, _ = synthetic_spectrograms(count=3)
    return specs.repeat(4, 1, 1)


def masked_columns(out, x):
    """Which time frames / frequency bins were overwritten, per sample."""
    changed = out != x
    return changed.all(dim=-2), changed.all(dim=-1)


@pytest.mark.parametrize("F, count", [(27, 1), (15, 2), (0, 3)])
def test_frequency_masks_respect_width_and_count(spectrograms, F, count):
    out = Pipeline.from_spec([{"op": "freq_mask", "F": F, "count": count}])(spectrograms, seed=1)
    p = out.params[0]
    assert p["width"].shape == (12, count) and (p["width"] <= F).all() and (p["width"] >= 0).all()
    assert (p["start"] + p["width"] <= 80).all()
    _, rows = masked_columns(out.x, spectrograms)
    assert (rows.sum(1) <= F * count).all()
    for i in range(12):
        expected = torch.zeros(80, dtype=torch.bool)
        for start, width in zip(p["start"][i].tolist(), p["width"][i].tolist()):
            expected[start:start + width] = True
        assert torch.equal(out.x[i][expected], torch.zeros_like(out.x[i][expected]))
        assert torch.equal(out.x[i][~expected], spectrograms[i][~expected])


def test_time_masks_are_bounded_by_p_and_differ_per_sample(spectrograms):
    out = Pipeline.from_spec([{"op": "time_mask", "T": 1000, "p": 0.05, "count": 2}])(spectrograms, seed=3)
    width, start = out.params[0]["width"], out.params[0]["start"]
    assert (width <= int(0.05 * 601)).all() and (start + width <= 601).all()
    columns, _ = masked_columns(out.x, spectrograms)
    assert (columns.sum(1) <= 2 * int(0.05 * 601)).all()
    assert len({tuple(row) for row in start.tolist()}) == 12  # iid per sample, copies included


def test_mean_value_masks(spectrograms):
    x = spectrograms + 5.0
    out = Pipeline.from_spec([{"op": "time_mask", "T": 50, "value": "mean"}])(x, seed=0)
    columns, _ = masked_columns(out.x, x)
    i = int(columns.any(1).nonzero()[0])
    assert torch.allclose(out.x[i][:, columns[i]], x[i].mean().expand(80, int(columns[i].sum())))


def test_adaptive_time_masks_scale_with_length():
    step = Pipeline.from_spec("specaugment-LD-adaptive").steps[2]
    assert step.limits(1000) == (20, 40)  # min(20, 0.04 * 1000) masks of up to 0.04 * 1000 frames
    assert step.limits(200) == (8, 8)


def test_time_warp_is_monotonic_and_keeps_the_ends(spectrograms):
    out = Pipeline.from_spec([{"op": "spec_time_warp", "W": 80}])(spectrograms, seed=2)
    center, distance = out.params[0]["center"], out.params[0]["distance"]
    assert ((center >= 80) & (center < 601 - 80)).all() and (distance.abs() <= 80).all()
    assert torch.equal(out.x[..., 0], spectrograms[..., 0]) and torch.equal(out.x[..., -1], spectrograms[..., -1])
    i = int(distance.abs().argmax())
    c, d = int(center[i]), int(distance[i])
    assert torch.allclose(out.x[i, :, c + d], spectrograms[i, :, c], atol=1e-5)  # the centre moved by d


def test_presets_follow_the_paper():
    lb = Pipeline.from_spec("specaugment-LB").to_spec()["steps"]
    assert lb[0] == {"op": "spec_time_warp", "W": 80}
    assert lb[1]["F"] == 27 and lb[1]["count"] == 1 and lb[2]["T"] == 100 and lb[2]["p"] == 1.0
    sm = Pipeline.from_spec("specaugment-SM").to_spec()["steps"]
    assert (sm[0]["W"], sm[1]["F"], sm[1]["count"], sm[2]["T"], sm[2]["p"], sm[2]["count"]) == (40, 15, 2, 70, 0.2, 2)
    assert {"specaugment-LB", "specaugment-LD", "specaugment-SM", "specaugment-SS"} <= set(PRESETS)


@pytest.mark.parametrize("shape", [(6, 80, 300), (6, 2, 80, 300)])
def test_replay_and_4d_spectrograms(shape):
    x = torch.randn(shape)
    pipe = Pipeline.from_spec({"modality": "spectrogram", "steps": PRESETS["specaugment-LD"][1]})
    full = pipe(x, seed=9, keys=torch.arange(6))
    part = pipe(x[[4, 1]], seed=9, keys=torch.tensor([4, 1]))
    assert torch.equal(part.x, full.x[[4, 1]])
    assert full.x.shape == shape


def test_zero_strength_is_identity(spectrograms):
    steps = [{"op": "spec_time_warp", "W": 0}, {"op": "freq_mask", "F": 0}, {"op": "time_mask", "T": 0}]
    assert torch.equal(Pipeline.from_spec(steps)(spectrograms).x, spectrograms)


@pytest.mark.parametrize("spec, x, words", [
    ([{"op": "freq_mask", "F": 27}], torch.randn(2, 20, 100), ["'F' = 27", "20 frequency bins"]),
    ([{"op": "spec_time_warp", "W": 80}], torch.randn(2, 80, 150), ["'W' = 80", "160 frames"]),
    ([{"op": "time_mask"}], torch.randn(2, 100), ["rank 2"]),
    ([{"op": "time_mask"}], torch.full((2, 8, 50), float("nan")), ["NaN"]),
    ([{"op": "time_mask"}], torch.zeros(2, 8, 50, dtype=torch.uint8), ["must be float"]),
])
def test_bad_spectrograms_are_refused(spec, x, words):
    with pytest.raises(ValueError) as error:
        Pipeline.from_spec(spec)(x)
    for word in words:
        assert word in str(error.value)


def test_bad_specaugment_specs():
    with pytest.raises(SpecError, match="'count'"):
        Pipeline.from_spec([{"op": "freq_mask", "count": -1}])
    with pytest.raises(SpecError, match=r"different modalities \(image, spectrogram\)"):
        Pipeline.from_spec([{"op": "hflip"}, {"op": "time_mask"}])
