"""Waveform rows of ``augserve bench``: each op and the ``sound-classify`` preset on 64 x 1 s of 16 kHz audio,
against audiomentations (numpy, per sample, its own RNG: the anchor). Every engine transforms every sample
(p=1) in the per-op rows; the preset row uses the preset's probabilities on both sides. torch-audiomentations
needs torchaudio, which augserve does not depend on: bench/RESULTS.md has one run of it, installed by hand.
"""

from __future__ import annotations

import pathlib
import tempfile
import wave as wave_file

import torch

from augserve.pipeline import Pipeline
from augserve.presets import PRESETS
from augserve.tools.bench.harness import Engine, Wanted

RATE = 16_000
ANCHOR = "audiomentations per-sample"
PINK = -3.01  # audiomentations' f_decay is in dB per octave: pink noise; augserve's "pink" is power ~ 1/f


def _case(op: str, batch: int) -> str:
    return f"waveform {op}, {batch} x 1 s at 16 kHz"


def waveform_cases(device: torch.device, wanted: Wanted, batch: int = 64) -> dict[str, list[Engine]]:
    """The waveform cases ``wanted`` accepts, built only then."""
    ops = ("gain", "time_shift", "noise (pink)", "lowpass", "reverb", "speed", "time_stretch", "pitch_shift",
           "sound-classify preset")
    if not any(wanted(_case(op, batch)) for op in ops):
        return {}
    import audiomentations as am

    generator = torch.Generator().manual_seed(4)
    audio = (0.1 * torch.randn(batch, RATE, generator=generator)).to(device)
    arrays = [row.cpu().numpy() for row in audio]

    def per_sample(transform, note: str = "numpy, its own RNG") -> Engine:
        return Engine(ANCHOR, lambda: [transform(samples=row, sample_rate=RATE) for row in arrays], note, batch)

    def ours(steps: list[dict], note: str = "", name: str = "augserve") -> Engine:
        pipe = Pipeline.from_spec(steps)
        return Engine(name, lambda: pipe(audio, seed=0), note, batch)

    librosa_pv = {"method": "librosa_phase_vocoder"}
    preset = PRESETS["sound-classify"][1]
    cases = {
        "gain": [per_sample(am.Gain(-12.0, 6.0, p=1.0)), ours([{"op": "gain", "min_gain_db": -12.0, "max_gain_db": 6.0, "p": 1.0}])],
        "time_shift": [per_sample(am.Shift(-0.5, 0.5, rollover=True, fade_duration=0.0, p=1.0), "numpy, no fade"),
                       ours([{"op": "time_shift", "max_shift": 0.5, "p": 1.0}])],
        "noise (pink)": [per_sample(am.AddColorNoise(3.0, 30.0, PINK, PINK, p=1.0), "AddColorNoise f_decay -3.01"),
                         ours([{"op": "noise", "min_snr_db": 3.0, "max_snr_db": 30.0, "color": "pink", "p": 1.0}])],
        "lowpass": [per_sample(am.LowPassFilter(150.0, 7500.0, p=1.0), "Butterworth, 12-24 dB/octave"),
                    ours([{"op": "lowpass", "p": 1.0}], "windowed-sinc FIR, zero-phase")],
        "speed": [per_sample(am.Resample(14_545, 17_778, p=1.0), "Resample to 16k/f Hz, f in [0.9, 1.1]"),
                  ours([{"op": "speed", "range": [0.9, 1.1], "p": 1.0}], "factor in [0.9, 1.1]")],
        "time_stretch": [per_sample(am.TimeStretch(0.8, 1.25, p=1.0, **librosa_pv), "librosa phase vocoder"),
                         per_sample(am.TimeStretch(0.8, 1.25, p=1.0), "signalsmith (its default)"),
                         ours([{"op": "time_stretch", "p": 1.0}], "phase vocoder")],
        "pitch_shift": [per_sample(am.PitchShift(-4.0, 4.0, p=1.0, **librosa_pv), "librosa phase vocoder"),
                        per_sample(am.PitchShift(-4.0, 4.0, p=1.0), "signalsmith (its default)"),
                        ours([{"op": "pitch_shift", "p": 1.0}], "continuous semitones")],
        "sound-classify preset": [
            per_sample(_compose(am, preset, **librosa_pv), "Compose, same ops and p, librosa phase vocoder"),
            per_sample(_compose(am, preset), "Compose, same ops and p, signalsmith"),
            ours(preset, "grouped plan (the CPU's)", "augserve sound-classify"),
        ],
    }
    if wanted(_case("reverb", batch)):
        cases["reverb"] = _reverb_engines(am, arrays, batch, ours)
    return {_case(op, batch): engines for op, engines in cases.items() if wanted(_case(op, batch))}


def _compose(am, steps: list[dict], **method):
    """audiomentations' Compose of the sound-classify steps with the same ranges and probabilities."""
    made = {
        "gain": lambda s: am.Gain(s["min_gain_db"], s["max_gain_db"], p=s["p"]),
        "time_shift": lambda s: am.Shift(-s["max_shift"], s["max_shift"], rollover=True, fade_duration=0.0, p=s["p"]),
        "noise": lambda s: am.AddColorNoise(s["min_snr_db"], s["max_snr_db"], PINK, PINK, p=s["p"]),
        "pitch_shift": lambda s: am.PitchShift(s["min_semitones"], s["max_semitones"], p=s["p"], **method),
        "time_stretch": lambda s: am.TimeStretch(s["min_rate"], s["max_rate"], p=s["p"], **method),
    }
    return am.Compose([made[step["op"]](step) for step in steps])


def _reverb_engines(am, arrays, batch, ours) -> list[Engine]:
    """Reverb: audiomentations' ApplyImpulseResponse reads responses from files, so 16 synthetic ones
    (augserve's own, rt60 0.2-0.8 s) are written to a temporary folder; augserve makes one per sample."""
    from augserve.ops import waveform as wave

    folder = pathlib.Path(tempfile.mkdtemp(prefix="augserve-bench-rir-"))
    generator = torch.Generator().manual_seed(5)
    rt60 = torch.linspace(0.2, 0.8, 16)
    responses = wave.synthetic_rir(torch.rand(16, int(0.8 * RATE), generator=generator), rt60, RATE)
    paths = []
    for index, response in enumerate(responses):
        paths.append(folder / f"rir{index:02d}.wav")
        pcm = (response / response.abs().max() * 32767).round().to(torch.int16).numpy()
        with wave_file.open(str(paths[-1]), "wb") as out:  # 16-bit mono PCM
            out.setnchannels(1), out.setsampwidth(2), out.setframerate(RATE), out.writeframes(pcm.tobytes())
    anchor = am.ApplyImpulseResponse([str(p) for p in paths], p=1.0, leave_length_unchanged=True)
    anchor.randomize_parameters(arrays[0], RATE)
    engines = [Engine(ANCHOR, lambda: [anchor(samples=row, sample_rate=RATE) for row in arrays],
                      "16 responses from files (cached after the first read)", batch)]
    engines.append(ours([{"op": "reverb", "min_rt60": 0.2, "max_rt60": 0.8, "p": 1.0}],
                        "a synthetic response made per sample, FFT convolution"))
    return engines
