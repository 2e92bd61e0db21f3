"""The spoken-digits experiment on a tiny corpus: espeak-ng synthesis into a cache with a manifest, the
test corruption at its stated SNR, RT60 and direct-to-reverberant ratio, and the runner writing its files."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

from augserve.experiments.speech import ARMS, GOAL_POINTS, SpeechRecipe, run_speech_experiments
from augserve.experiments.spoken_digits import (CLIP_SAMPLES, HELD_OUT_VOICES, MANIFEST, PITCHES, RATES,
                                                TEST_CONDITIONS, TRAIN_VOICES, WORDS, Corpus, add_noise, corrupt,
                                                load_spoken_digits, reverberate, room_impulse_response)

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (Debian: espeak-ng)")

# two training voices, one held-out, two words, one rate, two pitches: 8 training clips, 4 held out
TINY = Corpus(train_voices=TRAIN_VOICES[:2], held_out_voices=HELD_OUT_VOICES[:1], words=WORDS[:2], rates=RATES[:1],
              pitches=PITCHES[:2])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("spoken-digits")


def test_a_tiny_corpus_is_synthesized_once_with_a_manifest_and_decoded_to_padded_clips(folder):
    data = load_spoken_digits(TINY, folder, progress=False)
    per_voice = len(TINY.words) * len(TINY.rates) * len(TINY.pitches)
    assert len(data.train) == per_voice * len(TINY.train_voices) and len(data.held_out) == per_voice
    manifest = json.loads((folder / MANIFEST).read_text())
    assert "espeak" in manifest["espeak"].lower() and len(manifest["clips"]) == len(data.train) + len(data.held_out)
    assert data.train.waveforms.shape == (len(data.train), CLIP_SAMPLES) and data.train.waveforms.dtype == np.float32
    assert ((data.train.lengths > 0) & (data.train.lengths <= CLIP_SAMPLES)).all()
    for waveform, length in zip(data.train.waveforms, data.train.lengths):
        assert not waveform[length:].any() and np.abs(waveform[:length]).max() > 0.05  # a word, then zeros
    assert sorted(set(data.train.labels.tolist())) == list(range(len(TINY.words)))
    assert set(data.train.voices) == set(TINY.train_voices) and set(data.held_out.voices) == set(TINY.held_out_voices)
    first, second = (data.train.waveforms[np.array(data.train.voices) == v][0] for v in TINY.train_voices)
    assert not np.array_equal(first, second)  # the voices differ
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*.wav")}
    again = load_spoken_digits(TINY, folder, progress=False)  # kept, not made again, and decoded the same
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.wav")} == stamps
    assert np.array_equal(again.train.waveforms, data.train.waveforms)


def test_the_test_corruption_hits_its_stated_snr_rt60_and_direct_to_reverberant_ratio(folder):
    conditions = TEST_CONDITIONS
    rng = np.random.default_rng(0)
    response = room_impulse_response(conditions.rt60, conditions.drr_db, rng)
    assert len(response) == int(conditions.rt60 * 16000) and np.isclose(np.sum(response ** 2), 1.0)
    assert np.isclose(10 * np.log10(response[0] ** 2 / np.sum(response[1:] ** 2)), conditions.drr_db)
    clean = load_spoken_digits(TINY, folder, progress=False).held_out
    waveform, length = clean.waveforms[0], int(clean.lengths[0])
    wet, wet_length = reverberate(waveform, length, conditions.rt60, conditions.drr_db, rng)
    assert wet_length == min(CLIP_SAMPLES, length + len(response) - 1)
    assert np.isclose(np.mean(wet[:length] ** 2), np.mean(waveform[:length].astype(float) ** 2))
    noisy = add_noise(wet, wet_length, conditions.snr_db, rng)
    noise = noisy - wet
    assert np.count_nonzero(noise) == len(noise)  # the noise fills the whole clip
    snr = 10 * np.log10(np.mean(wet[:wet_length] ** 2) / np.mean(noise[:wet_length] ** 2))
    assert snr == pytest.approx(conditions.snr_db, abs=1e-6)
    spectrum = np.abs(np.fft.rfft(noise)) ** 2  # pink: about 3 dB less power per octave
    octave = lambda low: spectrum[low:2 * low].sum()  # noqa: E731
    assert 10 * np.log10(octave(500) / octave(2000)) == pytest.approx(0.0, abs=1.0)
    first, second = corrupt(clean, conditions), corrupt(clean, conditions)  # one fixed draw
    assert np.array_equal(first.waveforms, second.waveforms) and not np.array_equal(first.waveforms, clean.waveforms)
    assert (first.lengths == CLIP_SAMPLES).all() and np.array_equal(first.labels, clean.labels)


def test_one_epoch_of_the_runner_writes_the_summary_results_and_curves(folder, tmp_path):
    seeds, recipe = 2, SpeechRecipe(epochs=1, batch_size=4, validation_fraction=0.5, warmup_epochs=0)
    summary = run_speech_experiments(out=tmp_path, seeds=seeds, workers=1, recipe=recipe, corpus=TINY,
                                     folder=str(folder), progress=False)
    assert summary == (tmp_path / "summary.md").read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted((r["seed"], r["arm"]) for r in results["runs"]) == sorted((s, a) for s in range(seeds) for a in ARMS)
    assert all(r["epochs"] == recipe.epochs and 0 <= r["test_accuracy"] <= 1 for r in results["runs"])
    assert results["test_conditions"]["snr_db"] == TEST_CONDITIONS.snr_db and isinstance(results["goal_met"], bool)
    assert TEST_CONDITIONS.describe() in summary and f"at least {GOAL_POINTS:g} points" in summary
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = json.loads((tmp_path / "learning_curves.json").read_text())["series"]
    assert {s["run"] for s in curves if s["series"].startswith("test")} == set(ARMS)


def test_the_readme_states_the_test_conditions_the_code_uses():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    conditions = TEST_CONDITIONS
    for stated in (f"RT60 {conditions.rt60:g} s", f"ratio {conditions.drr_db:g} dB", f"{conditions.snr_db:g} dB SNR",
                   f"seed {conditions.seed}", f"{len(TRAIN_VOICES)} training voices",
                   f"{len(HELD_OUT_VOICES)} held-out voices"):
        assert stated in readme, stated
