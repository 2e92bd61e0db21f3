"""Sound sets that waveform steps read by name: background noises and room impulse responses.

A set is N clips at one sample rate, (N, T) float32 zero past each clip's valid length. In process a
caller registers arrays (``register``); a server declares the audio datasets of its config (``declare``),
read on first use (``augserve.named``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from augserve import device_constants
from augserve.named import Named
from augserve.spec import shown

MAX_CLIPS = 1 << 16


@dataclass(frozen=True, eq=False)
class SoundSet:
    name: str
    clips: torch.Tensor  # (N, T) float32 on the CPU, zero past each clip's length
    lengths: torch.Tensor  # (N,) int64, each in [1, T]
    sample_rate: int
    token: int = field(default_factory=itertools.count().__next__)  # names its device copies (ids are reused)

    def __len__(self) -> int:
        return self.clips.shape[0]

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The clips and lengths on ``device``, copied there once."""
        return (device_constants.cached(device, ("sound set clips", self.token), lambda: self.clips.to(device)),
                device_constants.cached(device, ("sound set lengths", self.token), lambda: self.lengths.to(device)))


_SETS: Named[SoundSet] = Named("sound set", "register arrays with augserve.sound_sets.register, or serve an "
                                            "audio dataset of that name")
declare, known, unknown_message, get = _SETS.declare, _SETS.known, _SETS.unknown_message, _SETS.get


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
    return _SETS.put(name, as_sound_set(name, clips, lengths, sample_rate))
