"""Waveform steps in pipelines: each per sample, replayable in any batch on either plan, reporting what it drew
and whether it applied; valid lengths respected (padding stays zero) and carried through duration changes and
``log_mel``; answers known from the formulas they follow."""

from __future__ import annotations

import math

import pytest
import torch

from augserve import sound_sets
from augserve.pipeline import Pipeline
from augserve.spec import SpecError

RATE = 16000
EVERY_OP = [
    {"op": "gain"}, {"op": "polarity_inversion"}, {"op": "time_shift", "rollover": False},
    {"op": "noise", "color": "pink"}, {"op": "background_noise", "sounds": "test-hum"}, {"op": "reverb"},
    {"op": "lowpass"}, {"op": "highpass"}, {"op": "bandpass"}, {"op": "speed"}, {"op": "time_stretch"},
    {"op": "pitch_shift"},
]


def tones(batch: int = 6, length: int = 4000, lengths: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A different tone per sample, zero past its valid length."""
    t = torch.arange(length) / RATE
    x = torch.stack([0.5 * torch.sin(2 * math.pi * (220 + 97 * i) * t) for i in range(batch)])
    valid = torch.tensor(lengths or [length - 500 * (i % 3) for i in range(batch)])
    return x.masked_fill(torch.arange(length)[None] >= valid[:, None], 0.0), valid


@pytest.fixture(autouse=True, scope="module")
def hum():
    t = torch.arange(1200) / RATE
    sound_sets.register("test-hum", torch.stack([torch.sin(2 * math.pi * 50 * t), torch.sign(torch.sin(2 * math.pi * 7 * t))]),
                        lengths=[1200, 900])


def one(step: dict, x, lengths, seed=3, keys=None, execution="grouped"):
    return Pipeline.from_spec([{**step, "p": 1.0}], execution=execution)(x, seed=seed, keys=keys, lengths=lengths)


@pytest.mark.parametrize("step", EVERY_OP, ids=lambda step: step["op"])
def test_each_op_replays_in_any_batch_on_either_plan_and_keeps_padding_zero(step):
    x, lengths = tones()
    spec = [{**step, "p": 0.7}]
    whole = Pipeline.from_spec(spec, execution="grouped")(x, seed=11, keys=torch.arange(6) + 40, lengths=lengths)
    device = Pipeline.from_spec(spec, execution="device")(x, seed=11, keys=torch.arange(6) + 40, lengths=lengths)
    assert torch.equal(whole.x, device.x) and torch.equal(whole.lengths, device.lengths)
    part = [4, 1]
    alone = Pipeline.from_spec(spec, execution="grouped")(x[part], seed=11, keys=torch.tensor(part) + 40,
                                                          lengths=lengths[part])
    assert torch.equal(alone.x, whole.x[part])
    out_lengths = whole.lengths
    assert torch.equal(whole.x.masked_fill(torch.arange(x.shape[-1])[None] < out_lengths[:, None], 0.0),
                       torch.zeros_like(x)), "padding after a sample's valid length must stay zero"
    applied = whole.params[0]["applied"]
    assert applied.dtype == torch.bool and applied.shape == (6,)
    unchanged = ~applied
    assert torch.equal(whole.x[unchanged], x[unchanged]) and torch.equal(out_lengths[unchanged], lengths[unchanged])


def test_gain_is_the_formula_and_polarity_negates():
    x, lengths = tones()
    out = one({"op": "gain", "min_gain_db": -12.0, "max_gain_db": 6.0}, x, lengths)
    gain = out.params[0]["gain_db"]
    assert ((gain >= -12) & (gain < 6)).all() and gain.unique().numel() == 6
    torch.testing.assert_close(out.x, x * 10 ** (gain[:, None] / 20))
    assert torch.equal(one({"op": "polarity_inversion"}, x, lengths).x, -x)


def test_time_shift_is_a_roll_of_the_valid_part():
    x, lengths = tones()
    for rollover in (True, False):
        out = one({"op": "time_shift", "rollover": rollover}, x, lengths)
        for i, (shift, length) in enumerate(zip(out.params[0]["shift"].tolist(), lengths.tolist())):
            assert abs(shift) <= 0.5 * length + 0.5
            expected = torch.roll(x[i, :length], shift)
            if not rollover:
                kept = torch.arange(length)
                expected = expected.masked_fill((kept < shift) | (kept >= length + shift), 0.0)
            assert torch.equal(out.x[i, :length], expected)


@pytest.mark.parametrize("op", ["noise", "background_noise"])
def test_added_noise_has_the_reported_snr_over_the_valid_part(op):
    x, lengths = tones()
    x[2] = 0.0  # a silent sample gets no noise
    step = {"op": op, "min_snr_db": 0.0, "max_snr_db": 20.0}
    if op == "background_noise":
        step["sounds"] = "test-hum"
    out = one(step, x, lengths)
    added = out.x - x
    for i, length in enumerate(lengths.tolist()):
        if i == 2:
            assert torch.equal(out.x[i], x[i])
            continue
        signal, noise = x[i, :length].square().mean().sqrt(), added[i, :length].square().mean().sqrt()
        assert 20 * math.log10(signal / noise) == pytest.approx(out.params[0]["snr_db"][i].item(), abs=0.01)


def test_durations_change_with_lengths_reported_and_log_mel_counts_frames():
    x, lengths = tones(4, 8000, [8000, 6000, 4000, 7999])
    pipe = Pipeline.from_spec([{"op": "speed", "factors": [0.9, 1.1], "p": 1.0}, {"op": "log_mel", "n_mels": 40}])
    out = pipe(x, seed=1, lengths=lengths)
    factor = out.params[0]["factor"]
    samples = torch.ceil(lengths / factor.double()).to(torch.int64).clamp(max=8000)
    assert torch.equal(out.params[0]["lengths"], samples)
    assert torch.equal(out.lengths, samples // 160 + 1) and out.x.shape == (4, 40, 51)


def test_speech_preset_runs_waveforms_to_masked_log_mel_spectrograms():
    x, lengths = tones(3, RATE, [RATE, 12000, 9000])
    out = Pipeline.from_spec("speech-perturb")(x, seed=0, lengths=lengths)
    assert out.x.shape == (3, 80, 101) and out.lengths.shape == (3,)
    assert [step["op"] for step in out.params][:4] == ["speed", "noise", "reverb", "log_mel"]


def test_refusals_name_the_field():
    x, lengths = tones()
    with pytest.raises(ValueError, match="lengths: each must lie in"):
        Pipeline.from_spec([{"op": "gain"}])(x, lengths=lengths + 4000)
    with pytest.raises(ValueError, match="lengths: only waveform batches"):
        Pipeline.from_spec([{"op": "hflip"}])(torch.zeros(2, 3, 8, 8), lengths=[8, 8])
    with pytest.raises(SpecError, match="no sound set named 'nowhere'"):
        Pipeline.from_spec([{"op": "background_noise", "sounds": "nowhere"}])
    with pytest.raises(SpecError, match="max_cutoff_hz.*Nyquist"):
        Pipeline.from_spec([{"op": "lowpass", "max_cutoff_hz": 9000.0}])
    with pytest.raises(ValueError, match="sound set 'test-hum' is at 16000 Hz"):
        Pipeline.from_spec([{"op": "background_noise", "sounds": "test-hum", "sample_rate": 8000}])(x)


def test_the_in_process_augmenter_carries_lengths_as_the_client_does():
    from augserve.in_process import InProcessAugmenter

    x, lengths = tones(3, 4000, [4000, 3000, 2000])
    spec = [{"op": "speed", "factors": [1.1], "p": 1.0}]
    (batch,) = InProcessAugmenter().map([(x, None, torch.arange(3), lengths)], pipeline=spec, seed=2)
    assert torch.equal(batch.lengths, torch.tensor([3637, 2728, 1819]))
    assert torch.equal(batch.x, Pipeline.from_spec(spec)(x, seed=2, keys=torch.arange(3), lengths=lengths).x)


def test_a_long_reverb_spec_costs_no_more_than_the_batch():
    x, lengths = tones(2, 400, [400, 300])
    out = Pipeline.from_spec([{"op": "reverb", "min_rt60": 5.0, "max_rt60": 5.0, "sample_rate": 384000, "p": 1.0}],
                             execution="device").device_call(x, seed=0, lengths=lengths)
    assert out.packed.host.numel() < 64 * 400 * 8  # the response drawn no longer than the 400-sample batch


def test_speed_takes_factors_or_a_range_not_both():
    with pytest.raises(SpecError, match="fields 'factors' and 'range' both"):
        Pipeline.from_spec([{"op": "speed", "factors": [0.9, 1.1], "range": [0.8, 1.2]}])


def test_gain_gives_the_same_bits_on_either_plan_in_a_wide_batch():
    """Wide enough for vector loops and their scalar tails (pow rounds differently in the two: gain uses exp)."""
    x = 0.1 * torch.randn(64, 64, generator=torch.Generator().manual_seed(3))
    spec = [{"op": "gain", "p": 0.5}]
    for seed in (1, 8, 22):  # seeds whose samples pow gave other bits in the grouped plan's subsets
        grouped, device = (Pipeline.from_spec(spec, execution=e)(x, seed=seed).x for e in ("grouped", "device"))
        assert torch.equal(grouped, device), seed
