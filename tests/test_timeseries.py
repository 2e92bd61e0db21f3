"""Time-series ops on real UCR/UEA data shipped with sktime (GunPoint, BasicMotions)."""

import numpy as np
import pytest
import torch
from sktime.datasets import load_basic_motions, load_gunpoint

from augserve import Pipeline

OPS = ["jitter", "scaling", "magnitude_warp", "time_warp", "window_slice", "window_warp", "window_warp_or_slice",
       "permutation", "drift"]


@pytest.fixture(scope="module")
def gunpoint():
    """(200, 1, 150) float32 hand-movement series."""
    series, _ = load_gunpoint(return_type="numpy3D")
    return torch.from_numpy(series).float()


@pytest.fixture(scope="module")
def motions():
    """(80, 6, 100) float32 accelerometer + gyroscope series."""
    series, _ = load_basic_motions(return_type="numpy3D")
    return torch.from_numpy(series).float()


def run(op, x, seed=0, keys=None, **options):
    out = Pipeline.from_spec([{"op": op, **options}])(x, seed=seed, keys=keys)
    return out.x, out.params[0]


@pytest.mark.parametrize("op", OPS)
def test_ops_keep_shape_dtype_and_change_real_data_per_sample(motions, op):
    out, _ = run(op, motions)
    assert out.shape == motions.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    changed = (out != motions).flatten(1).any(1)
    # permutation may draw one segment, or an order that puts the pieces back (Iwana & Uchida's too)
    assert changed.float().mean() > (0.5 if op == "permutation" else 0.9)
    twins = run(op, motions[:1].repeat(8, 1, 1))[0]
    assert len({t.numpy().tobytes() for t in twins}) > 4  # identical inputs, different draws


def test_input_is_never_modified(motions):
    before = motions.clone()
    for op in OPS:
        run(op, motions)
    assert torch.equal(motions, before)


@pytest.mark.parametrize("op", OPS)
def test_replay_by_seed_and_key(motions, op):
    keys = torch.arange(1000, 1080)
    full, _ = run(op, motions, seed=5, keys=keys)
    part, _ = run(op, motions[[70, 3, 41]], seed=5, keys=keys[[70, 3, 41]])
    assert torch.equal(part, full[[70, 3, 41]])


@pytest.mark.parametrize("op, options", [
    ("jitter", {"sigma": 0}), ("scaling", {"sigma": 0}), ("magnitude_warp", {"sigma": 0}),
    ("time_warp", {"sigma": 0}), ("window_slice", {"ratio": 1.0}), ("window_warp", {"scales": [1.0]}),
    ("window_warp_or_slice", {"scales": [1.0], "slice_ratio": 1.0}),
    ("permutation", {"max_segments": 1}), ("drift", {"max_drift": 0}),
])
def test_zero_strength_is_identity(gunpoint, op, options):
    out, _ = run(op, gunpoint, **options)
    assert torch.allclose(out, gunpoint, atol=1e-5)


def test_jitter_adds_noise_of_the_requested_std(gunpoint):
    out, _ = run("jitter", gunpoint, sigma=0.05)
    noise = out - gunpoint
    assert abs(noise.std().item() - 0.05) < 0.002 and abs(noise.mean().item()) < 0.002


def test_scaling_multiplies_each_channel_by_one_factor(motions):
    out, p = run("scaling", motions, sigma=0.2)
    assert torch.allclose(out, motions * p["factor"][:, :, None], atol=1e-6)
    assert abs(p["factor"].std().item() - 0.2) < 0.03


def test_magnitude_warp_curve_passes_through_its_knots(gunpoint):
    out, p = run("magnitude_warp", gunpoint, sigma=0.3, knots=4)
    curve = out / gunpoint
    at_knots = curve[..., torch.linspace(0, 149, 6).round().long()]
    assert torch.allclose(at_knots, p["knots"], atol=0.02)


@pytest.mark.parametrize("op", ["time_warp", "window_warp"])
def test_warps_are_monotonic_and_keep_first_and_last_step(gunpoint, op):
    out, p = run(op, gunpoint)
    assert torch.allclose(out[..., 0], gunpoint[..., 0], atol=1e-5)
    assert torch.allclose(out[..., -1], gunpoint[..., -1], atol=1e-5)
    if op == "time_warp":
        positions = p["positions"]
        assert (positions.diff(dim=1) >= 0).all() and positions[:, 0].eq(0).all()
        assert torch.allclose(positions[:, -1], torch.full((200,), 149.0))


@pytest.mark.parametrize("op", ["time_warp", "window_slice", "window_warp"])
def test_nearest_warps_read_whole_steps_at_the_same_positions(motions, op):
    """Same draws as linear (read off a ramp, whose linear warp is the positions themselves); every output
    is the input at the rounded position, so a spike keeps its height where linear flattens it."""
    ramp = torch.arange(400, dtype=torch.float64).expand(16, 2, 400).contiguous()
    positions, _ = run(op, ramp, seed=4)
    spikes = torch.zeros(16, 2, 400)
    spikes[:, :, ::37] = 5.0
    for x in (motions[:16, :2].repeat_interleave(4, dim=-1), spikes):
        nearest, _ = run(op, x, seed=4, interpolation="nearest")
        index = positions.round().long()
        assert torch.equal(nearest, x.gather(-1, index))
        assert not torch.equal(nearest, run(op, x, seed=4)[0])
    assert set(nearest.unique().tolist()) <= {0.0, 5.0} and nearest.amax() == 5.0
    linear, _ = run(op, spikes, seed=4)
    assert ((linear > 0) & (linear < 5)).any()  # linear smears spikes into their neighbours


@pytest.mark.parametrize("op", OPS)
def test_p_applies_the_same_change_to_a_drawn_share_of_samples(motions, op):
    """With p < 1 a sample is either left exactly as it came or changed exactly as at p = 1 (the gate is a
    draw of its own), about a share p of them; p = 1 reports no gate; p = 0 is the identity."""
    x = motions.repeat(5, 1, 1)
    keys = torch.arange(len(x))
    always, params = run(op, x, seed=9, keys=keys)
    assert "applied" not in params
    gated, params = run(op, x, seed=9, keys=keys, p=0.3)
    applied = params["applied"]
    assert applied.dtype == torch.bool and 0.2 < applied.float().mean() < 0.4
    assert torch.equal(gated[applied], always[applied]) and torch.equal(gated[~applied], x[~applied])
    part, part_params = run(op, x[[300, 7, 123]], seed=9, keys=keys[[300, 7, 123]], p=0.3)
    assert torch.equal(part, gated[[300, 7, 123]]) and torch.equal(part_params["applied"], applied[[300, 7, 123]])
    never, params = run(op, x, seed=9, keys=keys, p=0.0)
    assert torch.equal(never, x) and not params["applied"].any()


def test_window_warp_or_slice_gives_each_sample_one_of_the_two():
    """Read off a ramp, the output is the source positions: a sliced sample is one straight stretch of its
    window (constant slope), a warped one keeps its first and last step and changes slope at its window."""
    ramp = torch.arange(200, dtype=torch.float64).expand(400, 1, 200).contiguous()
    out, p = run("window_warp_or_slice", ramp, slice_ratio=0.9, warp_ratio=0.1)
    sliced, slopes = p["sliced"], out[:, 0].diff(dim=1)
    assert 0.4 < sliced.float().mean() < 0.6 and "applied" not in p
    assert torch.allclose(slopes[sliced], torch.full_like(slopes[sliced], 179 / 199))
    warped = out[~sliced, 0]
    assert warped[:, 0].eq(0).all() and torch.allclose(warped[:, -1], torch.full((len(warped),), 199.0, dtype=torch.float64))
    ratio = slopes[~sliced].amax(dim=1) / slopes[~sliced].amin(dim=1)  # the window against the rest: 2 or 1 / 0.5
    assert torch.allclose(ratio, torch.full_like(ratio, 2.0), rtol=0.01)
    assert set(p["scale"][~sliced].tolist()) == {0.5, 2.0} and p["scale"][sliced].eq(1).all()


def test_window_slice_starts_at_its_window_and_keeps_length(gunpoint):
    out, p = run("window_slice", gunpoint, ratio=0.8)
    start = p["start"]
    assert ((start >= 0) & (start <= 150 - 120)).all()
    assert torch.allclose(out[:, 0, 0], gunpoint[torch.arange(200), 0, start])
    assert out.shape[-1] == 150


def test_permutation_rearranges_the_same_values(motions):
    out, p = run("permutation", motions, max_segments=4)
    assert ((p["segments"] >= 1) & (p["segments"] <= 4)).all()
    assert torch.equal(out.sort(dim=-1).values, motions.sort(dim=-1).values)
    single = p["segments"] == 1
    assert torch.equal(out[single], motions[single])


def test_drift_starts_at_zero_and_peaks_at_the_amount(motions):
    out, p = run("drift", motions, max_drift=[0.1, 0.4], points=3)
    drift = out - motions
    assert torch.allclose(drift[..., 0], torch.zeros(80, 6), atol=1e-5)
    spread = motions.amax(-1) - motions.amin(-1)
    assert torch.allclose(drift.abs().amax(-1), p["amount"] * spread, rtol=1e-3, atol=1e-5)
    assert ((p["amount"] >= 0.1) & (p["amount"] <= 0.4)).all()


@pytest.mark.parametrize("spec, x, words", [
    ([{"op": "jitter"}], torch.randn(4, 150), ["rank 2", "(B, C, T)"]),
    ([{"op": "time_warp", "knots": 10}], torch.randn(4, 1, 8), ["'knots' = 10", "12 time steps"]),
    ([{"op": "magnitude_warp", "knots": 7}], torch.randn(4, 1, 5), ["'knots' = 7"]),
    ([{"op": "permutation", "max_segments": 9}], torch.randn(4, 1, 5), ["'max_segments' = 9"]),
    ([{"op": "drift"}], torch.tensor([[[1.0, float("inf")]]]), ["NaN or infinity"]),
    ([{"op": "scaling"}], torch.zeros(2, 1, 9, dtype=torch.uint8), ["must be float"]),
])
def test_bad_series_are_refused(spec, x, words):
    with pytest.raises(ValueError) as error:
        Pipeline.from_spec(spec)(x)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("count", [5, 6])
def test_spline_curves_are_bit_identical_in_any_batch_and_thread_count(threads, count):
    """drift (5 knots) once replayed other bits for a sample moved within a batch, with 4 threads."""
    from augserve.ops.resample import smooth_curve

    default = torch.get_num_threads()
    knots = torch.randn(768, count, generator=torch.Generator().manual_seed(0))
    whole = smooth_curve(knots, 1000)
    try:
        torch.set_num_threads(threads)
        assert torch.equal(smooth_curve(knots, 1000), whole)
        for rows in ([0], [5], [70, 3, 41], list(range(3, 70)), list(range(63, 130)), list(range(100, 768))):
            assert torch.equal(smooth_curve(knots[rows], 1000), whole[rows])
    finally:
        torch.set_num_threads(default)
    from scipy.interpolate import CubicSpline

    expected = CubicSpline(np.linspace(0, 999, count), knots[:4].numpy().T, axis=0)(np.arange(1000)).T
    assert np.allclose(whole[:4].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("spec,length,message", [
    ({"op": "magnitude_warp", "knots": 6}, 7, "'knots' = 6 needs at least 8 time steps"),
    ({"op": "time_warp"}, 5, "'knots' = 4 needs at least 6"),
    ({"op": "window_warp"}, 2, "needs at least 3 time steps"),
    ({"op": "permutation", "max_segments": 9}, 8, "'max_segments' = 9 needs at least as many"),
])
def test_series_too_short_are_refused_before_any_work(spec, length, message):
    with pytest.raises(ValueError, match=message):
        Pipeline.from_spec([spec]).check(torch.zeros(2, 1, length))


def test_linear_resampling_is_np_interp_per_row_with_exact_ends():
    from augserve.ops.resample import sample_last_axis

    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 2, 40, generator=generator)
    positions = torch.rand(5, 50, generator=generator) * 39
    positions[:, 0], positions[:, 1], positions[:, 2], positions[:, 3] = 0.0, 39.0, 38.0, 45.0  # ends, beyond
    out = sample_last_axis(x, positions)
    for row in range(5):
        for channel in range(2):
            expected = np.interp(positions[row].clamp(0, 39).numpy(), np.arange(40), x[row, channel].numpy())
            assert np.allclose(out[row, channel].numpy(), expected, atol=1e-6)
    assert torch.equal(out[:, :, 0], x[:, :, 0])
    assert torch.equal(out[:, :, 1], x[:, :, 39]) and torch.equal(out[:, :, 3], x[:, :, 39])
    assert torch.equal(out[:, :, 2], x[:, :, 38])
    assert torch.equal(sample_last_axis(x[:, :, :1], positions), x[:, :, :1].expand(-1, -1, 50))
