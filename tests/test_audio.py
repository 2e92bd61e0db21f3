"""SpecAugment on spectrograms: masks within their bounds, per sample, a warp that keeps its ends; the log-mel front end."""

import numpy as np
import pytest
import torch

from augserve import PRESETS, Pipeline, SpecError
from augserve.tools.preview import synthetic_spectrograms


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


# --- the log-mel front end: raw audio in ------------------------------------------------------

def reference_log_mel(wave: np.ndarray, rate=16000, n_fft=400, hop=160, n_mels=80, f_min=0.0, f_max=8000.0,
                      top_db=80.0) -> np.ndarray:
    """The textbook recipe in numpy: reflect-pad, frame, Hann, |rfft|^2, HTK triangles, dB, top_db."""
    padded = np.pad(wave, n_fft // 2, mode="reflect")
    count = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[i * hop:i * hop + n_fft] for i in range(count)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (frames, bins)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(mel(f_min), mel(f_max), n_mels + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    filters = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        rising, falling = (freqs - left) / (centre - left), (right - freqs) / (right - centre)
        filters[m] = np.clip(np.minimum(rising, falling), 0, None)
    db = 10 * np.log10(np.maximum(filters @ power.T, 1e-10))
    return np.maximum(db, db.max() - top_db) if top_db else db


def test_log_mel_matches_the_textbook_recipe_and_finds_a_tone():
    rate = 16000
    t = np.arange(rate) / rate
    waves = np.stack([np.sin(2 * np.pi * 1000 * t), np.random.default_rng(0).normal(size=rate) * 0.1]).astype(np.float32)
    out = Pipeline.from_spec([{"op": "log_mel"}])(torch.from_numpy(waves)).x
    assert out.shape == (2, 80, 101)
    for wave, got in zip(waves, out):
        assert np.allclose(got.numpy(), reference_log_mel(wave.astype(np.float64)), atol=0.05)
    centres = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 82)[1:-1] / 2595) - 1)
    loudest = int(out[0].mean(dim=1).argmax())
    assert abs(centres[loudest] - 1000) < (centres[loudest + 1] - centres[loudest - 1])  # the 1 kHz filter wins


def test_log_mel_is_batch_invariant_and_feeds_specaugment():
    waves = torch.randn(6, 2, 32000, generator=torch.Generator().manual_seed(3))  # 2 s: 201 frames > 2W
    spec = {"steps": [{"op": "log_mel", "n_mels": 64}] + PRESETS["specaugment-LD"][1]}
    pipe = Pipeline.from_spec(spec)
    assert pipe.modality == "waveform" and pipe.stages[1:] == ["spectrogram"] * 3
    batch = pipe(waves, seed=5, keys=torch.arange(10, 16)).x
    assert batch.shape == (6, 2, 64, 201)
    for i in (0, 4):
        assert torch.equal(pipe(waves[i:i + 1], seed=5, keys=torch.tensor([10 + i])).x, batch[i:i + 1])


@pytest.mark.parametrize("steps, message", [
    ([{"op": "freq_mask"}, {"op": "log_mel"}], "freq_mask\\): works on spectrogram batches, not on this pipeline's "
                                                "modality 'waveform'"),
    ([{"op": "gain"}, {"op": "log_mel"}, {"op": "log_mel"}], "step 3 \\(log_mel\\).*step 2 \\(log_mel\\) already did"),
    ([{"op": "log_mel", "n_mels": 300}], "'n_mels' = 300 exceeds the 201 frequency bins"),
    ([{"op": "log_mel", "f_max": 9000}], "'f_max' = 9000 is above the Nyquist frequency 8000"),
    ([{"op": "log_mel"}, {"op": "hflip"}], "works on image batches"),
])
def test_log_mel_refuses_bad_specs(steps, message):
    with pytest.raises(SpecError, match=message):
        Pipeline.from_spec(steps)


def test_log_mel_refuses_short_or_misshapen_audio():
    pipe = Pipeline.from_spec([{"op": "log_mel"}])
    with pytest.raises(ValueError, match="too short for field 'n_fft'"):
        pipe(torch.zeros(2, 100))
    with pytest.raises(ValueError, match=r"\(B, T\) or \(B, C, T\)"):
        pipe(torch.zeros(2, 1, 8, 800))
    with pytest.raises(ValueError, match="NaN"):
        pipe(torch.full((2, 800), float("nan")))
