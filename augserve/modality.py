"""What kind of batch a pipeline works on, and the layouts each kind accepts."""

from __future__ import annotations

import enum


class Modality(enum.StrEnum):
    IMAGE = "image"
    SPECTROGRAM = "spectrogram"
    TIMESERIES = "timeseries"
    WAVEFORM = "waveform"
    TABULAR = "tabular"
    TEXT = "text"

    @property
    def layout(self) -> str:
        return _LAYOUTS[self]

    @property
    def ranks(self) -> tuple[int, ...]:
        return _RANKS[self]


_LAYOUTS = {Modality.IMAGE: "(B, C, H, W)", Modality.SPECTROGRAM: "(B, F, T) or (B, C, F, T)",
            Modality.TIMESERIES: "(B, C, T)", Modality.WAVEFORM: "(B, T) or (B, C, T)",
            Modality.TABULAR: "(B, F)", Modality.TEXT: "a list of sentences (str)"}
_RANKS = {Modality.IMAGE: (4,), Modality.SPECTROGRAM: (3, 4), Modality.TIMESERIES: (3,), Modality.WAVEFORM: (2, 3),
          Modality.TABULAR: (2,), Modality.TEXT: (2,)}
# What mixing and label smoothing work on. A rank-2 batch is a table or a waveform: tabular steps imply the
# modality, and a pipeline of mixing steps alone on a table declares it (``modality: tabular``).
BATCHES = (Modality.IMAGE, Modality.SPECTROGRAM, Modality.TIMESERIES, Modality.TABULAR)
