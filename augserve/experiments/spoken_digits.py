"""Spoken digits made offline with espeak-ng, and the fixed test conditions they are scored under.

The words "zero" to "nine", spoken by espeak-ng voice variants (an accent plus a speaker variant) at
several rates and pitches, synthesized once into a cache folder with a manifest, decoded with
soundfile, resampled to 16 kHz, trimmed of leading and trailing silence and zero-padded (or cropped)
to 1 s: float32 (N, 16000) waveforms with their valid lengths. Training voices and held-out voices
share no accent and no speaker variant.

The test conditions are made here with numpy/scipy only, independent of augserve's own steps: every
held-out clip is reverberated once with a synthetic room impulse response and gets pink noise at a
fixed SNR, all drawn from one fixed seed.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

import numpy as np

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE  # 1 s
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# accent+speaker variant; the held-out voices use accents and variants no training voice has
TRAIN_VOICES = ("en-us+m1", "en-us+f1", "en-us+m3", "en-gb+m2", "en-gb+f2", "en-gb+klatt",
                "en-gb-x-rp+m4", "en-gb-x-rp+f3", "en-gb-scotland+m5", "en-gb-scotland+f4", "en-029+m6",
                "en-029+croak")
HELD_OUT_VOICES = ("en-us-nyc+m7", "en-gb-x-gbcwmd+f5", "en-gb-x-gbclan+m8", "en-us-nyc+klatt3")
RATES = (130, 160, 190)  # words per minute
PITCHES = (25, 50, 75)  # espeak-ng's 0-99
SILENCE = 0.01  # trimmed: leading and trailing samples below this fraction of the clip's peak ...
MARGIN = 0.02  # ... but for this many seconds either side of the word
ESPEAK = "espeak-ng"
MANIFEST = "manifest.json"


def cache_dir() -> pathlib.Path:
    """Where clips are synthesized: ``$AUGSERVE_SPOKEN_DIGITS_DIR`` or ``~/.cache/augserve/spoken-digits``."""
    return pathlib.Path(os.environ.get("AUGSERVE_SPOKEN_DIGITS_DIR") or
                        pathlib.Path.home() / ".cache" / "augserve" / "spoken-digits")


@dataclass(frozen=True)
class Corpus:
    """Which clips: every training and held-out voice says every word at every rate and pitch."""

    train_voices: tuple = TRAIN_VOICES
    held_out_voices: tuple = HELD_OUT_VOICES
    words: tuple = WORDS
    rates: tuple = RATES
    pitches: tuple = PITCHES

    def clips(self, voices: tuple) -> list[dict]:
        return [{"voice": voice, "word": word, "label": label, "rate": rate, "pitch": pitch,
                 "file": f"{voice.replace('+', '_')}/{word}-s{rate}-p{pitch}.wav"}
                for voice in voices for label, word in enumerate(self.words)
                for rate in self.rates for pitch in self.pitches]

    def describe(self) -> str:
        per_voice = len(self.words) * len(self.rates) * len(self.pitches)
        return (f"{len(self.words)} words ({', '.join(self.words)}) x {len(self.rates)} rates "
                f"({', '.join(map(str, self.rates))} wpm) x {len(self.pitches)} pitches "
                f"({', '.join(map(str, self.pitches))}) = {per_voice} clips per voice; training voices "
                f"({len(self.train_voices)}, {per_voice * len(self.train_voices)} clips): "
                f"{', '.join(self.train_voices)}; held-out voices ({len(self.held_out_voices)}, "
                f"{per_voice * len(self.held_out_voices)} clips): {', '.join(self.held_out_voices)}")


@dataclass
class Clips:
    """(N, CLIP_SAMPLES) float32 waveforms at SAMPLE_RATE, their valid lengths, labels and voice names."""

    waveforms: np.ndarray
    lengths: np.ndarray  # int64
    labels: np.ndarray  # int64
    voices: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "Clips":
        return Clips(self.waveforms[index], self.lengths[index], self.labels[index],
                     [self.voices[i] for i in index])


@dataclass
class SpokenDigits:
    train: Clips  # the training voices (a run carves its validation split out of them)
    held_out: Clips  # the held-out voices, clean (the test set is them under ``TestConditions``)
    corpus: Corpus
    words: tuple = WORDS

    @property
    def num_classes(self) -> int:
        return len(self.words)


def espeak_version() -> str:
    if shutil.which(ESPEAK) is None:
        raise RuntimeError(f"spoken digits: {ESPEAK} is not installed (Debian: apt-get install espeak-ng)")
    return subprocess.run([ESPEAK, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _speak(clip: dict, folder: pathlib.Path) -> None:
    path = folder / clip["file"]
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.wav")
    subprocess.run([ESPEAK, "-v", clip["voice"], "-s", str(clip["rate"]), "-p", str(clip["pitch"]),
                    "-w", str(partial), clip["word"]], check=True, capture_output=True)
    partial.replace(path)


def synthesize(corpus: Corpus = Corpus(), folder: str | pathlib.Path | None = None, *, workers: int = 2,
               progress: bool = True) -> pathlib.Path:
    """Every clip of ``corpus`` as a WAV under ``folder`` (default ``cache_dir()``), made once: clips already
    there are kept. Writes ``manifest.json`` (espeak-ng's version and every clip); returns the folder."""
    from tqdm import tqdm

    folder = pathlib.Path(folder) if folder is not None else cache_dir()
    version = espeak_version()
    clips = corpus.clips(corpus.train_voices) + corpus.clips(corpus.held_out_voices)
    missing = [clip for clip in clips if not (folder / clip["file"]).is_file()]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # each clip is an espeak-ng process
        for _ in tqdm(pool.map(lambda clip: _speak(clip, folder), missing), total=len(missing),
                      desc="synthesizing spoken digits", disable=not progress or not missing):
            pass
    manifest = folder / MANIFEST
    known = json.loads(manifest.read_text())["clips"] if manifest.is_file() else []
    files = {clip["file"] for clip in clips}
    manifest.write_text(json.dumps({"espeak": version,
                                    "clips": [c for c in known if c["file"] not in files] + clips}, indent=1))
    return folder


def _decode(path: pathlib.Path) -> np.ndarray:
    """A WAV as float32 at SAMPLE_RATE, trimmed of silence (keeping MARGIN), at most CLIP_SAMPLES long."""
    import math

    import soundfile
    from scipy.signal import resample_poly

    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        divisor = math.gcd(SAMPLE_RATE, rate)
        audio = resample_poly(audio, SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > SILENCE * np.abs(audio).max())
    if len(loud):
        margin = round(MARGIN * SAMPLE_RATE)
        audio = audio[max(loud[0] - margin, 0):loud[-1] + margin + 1]
    return audio[:CLIP_SAMPLES]


def _load(folder: pathlib.Path, clips: list[dict], progress: bool, desc: str) -> Clips:
    from tqdm import tqdm

    waveforms = np.zeros((len(clips), CLIP_SAMPLES), np.float32)
    lengths = np.zeros(len(clips), np.int64)
    for n, clip in enumerate(tqdm(clips, desc=desc, disable=not progress, leave=False)):
        audio = _decode(folder / clip["file"])
        waveforms[n, :len(audio)], lengths[n] = audio, len(audio)
    return Clips(waveforms, lengths, np.array([c["label"] for c in clips], np.int64), [c["voice"] for c in clips])


def load_spoken_digits(corpus: Corpus = Corpus(), folder: str | pathlib.Path | None = None, *,
                       progress: bool = True) -> SpokenDigits:
    """The corpus synthesized (if not yet) and decoded: training and held-out voices, clean."""
    folder = synthesize(corpus, folder, progress=progress)
    return SpokenDigits(_load(folder, corpus.clips(corpus.train_voices), progress, "decoding training voices"),
                        _load(folder, corpus.clips(corpus.held_out_voices), progress, "decoding held-out voices"),
                        corpus, corpus.words)


# ---- the test conditions: numpy/scipy only, fixed before any run ----

@dataclass(frozen=True)
class TestConditions:
    """Held-out voices, each clip reverberated then noised once, every draw from ``seed``."""

    __test__ = False  # not a pytest class

    snr_db: float = 10.0  # pink noise, over the whole clip, at this SNR against the reverberant word
    rt60: float = 0.6  # seconds: the impulse response's tail falls 60 dB in this time (and ends there)
    drr_db: float = 0.0  # direct-to-reverberant energy ratio of the impulse response
    seed: int = 20240601

    def describe(self) -> str:
        return (f"every held-out clip corrupted once (seed {self.seed}): reverberated by convolution "
                f"(`scipy.signal.fftconvolve`) with a synthetic room impulse response, a direct-path impulse plus "
                f"exponentially decaying Gaussian noise with RT60 {self.rt60:g} s at a direct-to-reverberant "
                f"ratio of {self.drr_db:g} dB (a fresh response per clip; the result rescaled to the clean word's "
                f"RMS, the tail kept up to the 1 s clip), then pink (1/f) noise over the whole clip at "
                f"{self.snr_db:g} dB SNR against the reverberant word over its valid samples. numpy/scipy only, "
                "independent of the training augmentation.")


TEST_CONDITIONS = TestConditions()


def room_impulse_response(rt60: float, drr_db: float, rng: np.random.Generator,
                          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A direct impulse then exponentially decaying Gaussian noise (60 dB down at ``rt60`` s, where it ends),
    the tail scaled to ``drr_db`` below the direct path's energy; unit energy overall."""
    samples = max(int(rt60 * sample_rate), 2)
    t = np.arange(1, samples) / sample_rate
    tail = rng.standard_normal(samples - 1) * np.exp(-3 * np.log(10) * t / rt60)  # amplitude 1e-3 at rt60
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail ** 2))
    response = np.concatenate([[1.0], tail])
    return response / np.sqrt(np.sum(response ** 2))


def pink_noise(samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise with a 1/f power spectrum (white Gaussian noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    frequencies = np.arange(len(spectrum), dtype=float)
    frequencies[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(frequencies), samples)
    noise -= noise.mean()
    return noise / noise.std()


def reverberate(waveform: np.ndarray, length: int, rt60: float, drr_db: float,
                rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(the clip reverberated, its new valid length): the tail runs on up to the clip's end; rescaled to the
    clean word's RMS over its valid samples."""
    from scipy.signal import fftconvolve

    dry = waveform[:length].astype(np.float64)
    wet = fftconvolve(dry, room_impulse_response(rt60, drr_db, rng))[:len(waveform)]
    wet *= np.sqrt(np.mean(dry ** 2) / max(np.mean(wet[:length] ** 2), 1e-20))
    out = np.zeros(len(waveform))
    out[:len(wet)] = wet
    return out, len(wet)


def add_noise(waveform: np.ndarray, length: int, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``waveform`` plus pink noise over all its samples, scaled so that the signal's power over its first
    ``length`` samples is ``snr_db`` above the noise's power over the same samples."""
    noise = pink_noise(len(waveform), rng)
    signal_power = np.mean(waveform[:length].astype(np.float64) ** 2)
    noise_power = np.mean(noise[:length] ** 2)
    return waveform + noise * np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))


def corrupt(clips: Clips, conditions: TestConditions = TEST_CONDITIONS) -> Clips:
    """The test set: every clip reverberated then noised (``TestConditions``); valid lengths become the whole
    clip (the noise fills it)."""
    rng = np.random.default_rng(conditions.seed)
    out = np.empty_like(clips.waveforms)
    for n, (waveform, length) in enumerate(zip(clips.waveforms, clips.lengths)):
        wet, wet_length = reverberate(waveform, int(length), conditions.rt60, conditions.drr_db, rng)
        out[n] = add_noise(wet, wet_length, conditions.snr_db, rng)
    return Clips(out, np.full(len(clips), clips.waveforms.shape[1], np.int64), clips.labels.copy(),
                 list(clips.voices))


def corpus_record(corpus: Corpus, conditions: TestConditions) -> dict:
    """What results.json records about the data and the test."""
    return {"corpus": asdict(corpus), "test_conditions": asdict(conditions), "sample_rate": SAMPLE_RATE,
            "clip_samples": CLIP_SAMPLES}
