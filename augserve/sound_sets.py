"""Sound sets that waveform steps read by name: background noises and room impulse responses.

A set is N clips at one sample rate, (N, T) float32 zero past each clip's valid length. In process a
caller registers arrays (``register``); a server declares the audio datasets of its config (``declare``),
read on first use. Steps name a set in their spec, so a spec stays plain data on the wire.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from augserve import device_constants
from augserve.spec import did_you_mean, shown

MAX_CLIPS = 1 << 16


@dataclass(frozen=True, eq=False)
class SoundSet:
    name: str
    clips: torch.Tensor  # (N, T) float32 on the CPU, zero past each clip's length
    lengths: torch.Tensor  # (N,) int64, each in [1, T]
    sample_rate: int

    def __len__(self) -> int:
        return self.clips.shape[0]

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The clips and lengths on ``device``, copied there once."""
        return (device_constants.cached(device, ("sound set clips", id(self)), lambda: self.clips.to(device)),
                device_constants.cached(device, ("sound set lengths", id(self)), lambda: self.lengths.to(device)))


_sets: dict[str, SoundSet | Callable[[], SoundSet]] = {}
_lock = threading.Lock()


def as_sound_set(name: str, clips: Any, lengths: Any = None, sample_rate: int = 16000) -> SoundSet:
    """Clips (N, T) (or one clip (T,)) checked as a set: finite floats, lengths in [1, T]."""
    clips = torch.as_tensor(np.asarray(clips) if not isinstance(clips, torch.Tensor) else clips)
    if clips.dim() == 1:
        clips = clips[None]
    if clips.dim() != 2 or not clips.is_floating_point() or not 1 <= clips.shape[0] <= MAX_CLIPS or \
            clips.shape[1] == 0:
        raise ValueError(f"sound set {name!r}: expected float clips (N, T) with 1 to {MAX_CLIPS} clips, got "
                         f"{clips.dtype} of shape {tuple(clips.shape)}")
    clips = clips.to(device="cpu", dtype=torch.float32).contiguous()
    if not torch.isfinite(clips).all():
        raise ValueError(f"sound set {name!r}: clips hold NaN or infinity")
    full = torch.full((clips.shape[0],), clips.shape[1], dtype=torch.int64)
    lengths = full if lengths is None else torch.as_tensor(np.asarray(lengths)).to(torch.int64)
    if lengths.shape != full.shape or not ((lengths >= 1) & (lengths <= clips.shape[1])).all():
        raise ValueError(f"sound set {name!r}: expected {clips.shape[0]} lengths, each in [1, {clips.shape[1]}]")
    past = torch.arange(clips.shape[1])[None, :] >= lengths[:, None]
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 1000 <= sample_rate <= 384000:
        raise ValueError(f"sound set {name!r}: sample_rate: expected an integer in [1000, 384000] Hz, "
                         f"got {shown(sample_rate)}")
    if clips.masked_select(past).any():  # a decoded dataset is already zero there: no second copy of it
        clips = clips.masked_fill(past, 0.0)
    return SoundSet(name, clips, lengths, sample_rate)


def register(name: str, clips: Any, lengths: Any = None, sample_rate: int = 16000) -> SoundSet:
    """Make ``clips`` the sound set ``name`` for the steps of this process (replacing one of that name)."""
    sound_set = as_sound_set(name, clips, lengths, sample_rate)
    with _lock:
        _sets[name] = sound_set
    return sound_set


def declare(name: str, load: Callable[[], SoundSet]) -> None:
    """Name a set that ``load`` reads the first time a step needs it (a server's configured datasets)."""
    with _lock:
        _sets[name] = load


def known(name: str) -> bool:
    with _lock:
        return name in _sets


def unknown_message(name: str) -> str:
    """Why ``name`` is not a set, and what is."""
    with _lock:
        names = sorted(_sets)
    return (f"no sound set named {shown(name)}{did_you_mean(name, names)} (known: {', '.join(names) or 'none'}; "
            "register arrays with augserve.sound_sets.register, or serve an audio dataset of that name)")


def get(name: str) -> SoundSet:
    """The set ``name``, read now if it was only declared (once, under the lock); KeyError if none."""
    with _lock:
        entry = _sets.get(name)
        if entry is None:
            raise KeyError(name)
        if not isinstance(entry, SoundSet):
            entry = _sets[name] = entry()
        return entry
