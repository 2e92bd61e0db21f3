"""Served audio datasets: class folders of WAV, FLAC and OGG files, decoded once into one in-memory array.

A folder is indexed at start-up (a listing, no decoding), so a wrong path or a folder past its limits stops
start-up naming it. It is decoded on first use, by a stream or by a step that reads it as a sound set, once
for both: each file mixed down to mono (files of a folder rarely agree on their channels, and the steps'
sound sets are mono), resampled to the dataset's rate, its first ``seconds`` kept and the rest of its row
zero, its valid length kept beside it. Audio is short next to images, so holding it decoded costs less than
decoding it for every batch. A file that cannot be decoded is left out of every batch with its reason, as
an image folder's unreadable files are.
"""

from __future__ import annotations

import logging
import math
import pathlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from augserve import sound_sets
from augserve.server.file_datasets import Samples
from augserve.spec import shown

log = logging.getLogger("augserve.server")

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
FIELDS = {"type", "path", "sample_rate", "seconds", "max_files", "max_seconds"}
MAX_FILES = sound_sets.MAX_CLIPS  # per dataset, and its default: the most clips a sound set holds
MAX_SECONDS = 4 * 3600.0  # default total decoded seconds per dataset: 0.9 GiB of float32 at 16 kHz
MAX_CHANNELS = 64
RATES = (1000, 384000)  # Hz, as sound sets take


@dataclass
class AudioDataset:
    """Waveforms (N, T) float32, zero past each row's valid length; an unreadable file's row is all zero."""

    name: str
    x: torch.Tensor  # (N, T) float32
    lengths: torch.Tensor  # (N,) int64; 0 for an unreadable file
    labels: torch.Tensor  # (N,) int64
    num_classes: int
    paths: list[str]
    unreadable: dict[int, str]  # dataset index -> why it could not be decoded
    sample_rate: int
    modality: str = "waveform"

    def __len__(self) -> int:
        return self.x.shape[0]

    def read(self, indices: torch.Tensor, max_pixels: int) -> Samples:
        """A batch's rows and valid lengths, the unreadable files left out with their reasons."""
        skipped = [(index, self.unreadable[index]) for index in indices.tolist() if index in self.unreadable]
        if skipped:
            indices = indices[torch.tensor([index not in self.unreadable for index in indices.tolist()])]
        rows = indices.numpy()
        return Samples(torch.from_numpy(self.x.numpy()[rows]), indices, self.labels[indices], skipped,
                       torch.from_numpy(self.lengths.numpy()[rows]))

    def where(self, index: int) -> str:
        return self.paths[index]


def _number(name: str, entry: dict, key: str, default: Any, low: float, high: float, integer: bool) -> Any:
    value = entry.get(key, default)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high or \
            (not integer and value == 0):
        what = "an integer" if integer else "a number"
        raise ValueError(f"datasets.{name}.{key}: expected {what} in {'[' if integer else '('}{low:g}, {high:g}], "
                         f"got {shown(value)}")
    return value


class AudioFolder:
    """An audio folder as indexed at start-up; calling it decodes the files (once, whoever asks first)."""

    def __init__(self, name: str, paths: list[str], labels: list[int], num_classes: int, sample_rate: int,
                 length: int):
        self.name, self.paths, self.num_classes = name, paths, num_classes
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.sample_rate, self.length = sample_rate, length
        self._lock = threading.Lock()
        self._loaded: AudioDataset | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __call__(self) -> AudioDataset:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._decode()
            return self._loaded

    def _decode(self) -> AudioDataset:
        x = np.zeros((len(self.paths), self.length), dtype=np.float32)
        lengths = np.zeros(len(self.paths), dtype=np.int64)
        unreadable = {}
        for index, path in enumerate(self.paths):
            try:
                clip = decode(path, self.sample_rate, self.length)
            except Exception as error:  # soundfile's are RuntimeErrors; one bad file never loses the folder
                unreadable[index] = _reason(error)
                continue
            x[index, :len(clip)], lengths[index] = clip, len(clip)
        return AudioDataset(self.name, torch.from_numpy(x), torch.from_numpy(lengths), self.labels, self.num_classes,
                            self.paths, unreadable, self.sample_rate)

    def sound_set(self) -> sound_sets.SoundSet:
        """The decoded clips as a sound set of the same name (its readable files only)."""
        dataset = self()
        readable = dataset.lengths > 0
        if not readable.any():
            index, reason = next(iter(dataset.unreadable.items()))
            raise ValueError(f"sound set {self.name!r}: none of its {len(dataset)} files could be decoded (index "
                             f"{index}: {reason}; `augserve datasets index --check` lists them with their paths)")
        if readable.all():
            return sound_sets.as_sound_set(self.name, dataset.x, dataset.lengths, self.sample_rate)
        return sound_sets.as_sound_set(self.name, dataset.x[readable], dataset.lengths[readable], self.sample_rate)


def _reason(error: Exception) -> str:
    """Why a file was left out, for the client: what is wrong with it, not where the server keeps it (logged)."""
    said = getattr(error, "error_string", None)  # libsndfile's own words, without the path
    if said:
        return f"not a readable {'/'.join(s[1:].upper() for s in AUDIO_SUFFIXES)} file: {said}"
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, OSError) and error.strerror:
        return f"unreadable: {error.strerror}"
    return str(error)[:200]


def decode(path: str, sample_rate: int, length: int) -> np.ndarray:
    """A file's first ``length`` samples at ``sample_rate``, mono float32 (shorter when the file is): only the
    frames that cover them are read (a few more, so the resampling filter sees past the cut)."""
    import soundfile
    from scipy.signal import resample_poly

    info = soundfile.info(path)
    if info.channels > MAX_CHANNELS:
        raise ValueError(f"{info.channels} channels, more than {MAX_CHANNELS}")
    if not RATES[0] <= info.samplerate <= RATES[1]:  # before resample_poly sizes its filter by the ratio
        raise ValueError(f"sample rate {info.samplerate} Hz in its header (expected {RATES[0]} to {RATES[1]})")
    step = math.gcd(sample_rate, info.samplerate)
    up, down = sample_rate // step, info.samplerate // step
    frames = math.ceil(length * down / up) + 32
    data, _ = soundfile.read(path, frames=frames, dtype="float32", always_2d=True)
    if not len(data):
        raise ValueError("no samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise ValueError("samples hold NaN or infinity")
    if up != down:
        valid = min(length, math.ceil(len(mono) * up / down))
        mono = resample_poly(mono, up, down)[:valid]
    return np.asarray(mono[:length], dtype=np.float32)


def index_audio_folder(name: str, entry: dict) -> AudioFolder:
    """One subfolder per class, every WAV/FLAC/OGG file in it (recursively); fields and limits checked, nothing
    decoded: the files times ``seconds`` bound what decoding will hold."""
    sample_rate = _number(name, entry, "sample_rate", 16000, *RATES, integer=True)
    seconds = _number(name, entry, "seconds", 1.0, 0, 3600, integer=False)
    max_files = _number(name, entry, "max_files", MAX_FILES, 1, MAX_FILES, integer=True)
    max_seconds = _number(name, entry, "max_seconds", MAX_SECONDS, 0, 1e7, integer=False)
    length = max(1, round(seconds * sample_rate))
    root = pathlib.Path(entry.get("path", ""))
    if not entry.get("path") or not root.is_dir():
        raise ValueError(f"dataset {name}: {root} is not a folder (give datasets.{name}.path)")
    classes = sorted(child.name for child in root.iterdir() if child.is_dir())
    if not classes:
        raise ValueError(f"dataset {name}: {root} has no class subfolders (expected one folder per class)")
    paths, labels = [], []
    for label, class_name in enumerate(classes):
        for file in sorted((root / class_name).rglob("*")):
            if file.suffix.lower() in AUDIO_SUFFIXES and file.is_file():
                paths.append(str(file))
                labels.append(label)
                if len(paths) > max_files:
                    raise ValueError(f"dataset {name}: more than {max_files} audio files in {root} (max_files); "
                                     f"serve fewer, or raise datasets.{name}.max_files (at most {MAX_FILES})")
    if not paths:
        raise ValueError(f"dataset {name}: no {', '.join(AUDIO_SUFFIXES)} files in the class folders of {root}")
    total = len(paths) * seconds
    if total > max_seconds:
        raise ValueError(f"dataset {name}: {len(paths)} files x {seconds:g} s = {total:g} decoded seconds, more than "
                         f"max_seconds {max_seconds:g}; serve fewer files, shorten datasets.{name}.seconds or raise "
                         f"datasets.{name}.max_seconds")
    return AudioFolder(name, paths, labels, len(classes), sample_rate, length)


def declare_sound_sets(loaders: dict) -> list[str]:
    """Make every served audio dataset a sound set of its name (decoded when a step first reads it); the names."""
    names = [name for name, loader in loaders.items() if isinstance(loader, AudioFolder)]
    for name in names:
        sound_sets.declare(name, loaders[name].sound_set)
    return names


def decode_sound_sets(names: list[str]) -> threading.Thread:
    """Decode the served sound sets now, beside serving, so no request's device call waits on it."""
    def decode() -> None:
        for name in names:
            try:
                sound_sets.get(name)
            except Exception:  # the step that names it gets the error; the server keeps serving the rest
                log.exception("sound set %r could not be read", name)

    thread = threading.Thread(target=decode, name="augserve-sound-sets", daemon=True)
    thread.start()
    return thread
