"""What kind of batch a pipeline works on, and the layouts each kind accepts."""

from __future__ import annotations

import enum


class Modality(enum.StrEnum):
    IMAGE = "image"
    SPECTROGRAM = "spectrogram"
    TIMESERIES = "timeseries"
    WAVEFORM = "waveform"

    @property
    def layout(self) -> str:
        return _LAYOUTS[self]

    @property
    def ranks(self) -> tuple[int, ...]:
        return _RANKS[self]


_LAYOUTS = {Modality.IMAGE: "(B, C, H, W)", Modality.SPECTROGRAM: "(B, F, T) or (B, C, F, T)",
            Modality.TIMESERIES: "(B, C, T)", Modality.WAVEFORM: "(B, T) or (B, C, T)"}
_RANKS = {Modality.IMAGE: (4,), Modality.SPECTROGRAM: (3, 4), Modality.TIMESERIES: (3,), Modality.WAVEFORM: (2, 3)}
BATCHES = (Modality.IMAGE, Modality.SPECTROGRAM, Modality.TIMESERIES)  # what steps work on (and mixing on all)
