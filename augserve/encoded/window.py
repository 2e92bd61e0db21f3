"""Decoded images kept for whoever asks next: one decode of a file per window, whatever reads it.

Jobs that read the same served files with other pipelines or seeds (a sweep, an ablation) crop each
image differently, but decode the same pixels: on JPEGs the decode is about half the CPU a sample
costs. The window keeps decoded images by an identity the caller vouches for (a served dataset's
name and sample index: never a client's bytes, whose reuse would tell one tenant what another sent),
least recently asked first out once it holds more than ``max_bytes``. A file being decoded is
decoded once: the others asking for it wait for those pixels. The pixels are shared, so they are
never written to (the pipeline never writes into its input).
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from typing import Callable, Hashable

import torch


class DecodedWindow:
    def __init__(self, max_bytes: int, on_outcome: Callable[[str], None] = lambda outcome: None,
                 on_size: Callable[[int], None] = lambda nbytes: None):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._on_outcome, self._on_size = on_outcome, on_size
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[Hashable, concurrent.futures.Future] = collections.OrderedDict()

    def pixels(self, key: Hashable, decode: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The image ``key`` names: kept, being decoded by another thread, or ``decode()``'d now."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = concurrent.futures.Future()
                mine = True
            else:
                self._entries.move_to_end(key)
                mine = False
        if not mine:
            try:
                pixels = entry.result()
                self._on_outcome("shared")
                return pixels
            except Exception:  # noqa: BLE001 - the file failed for the other reader: decode it to raise our own error
                return decode()
        try:
            pixels = decode()
        except BaseException as error:
            with self._lock:
                self._entries.pop(key, None)
            entry.set_exception(error)
            raise
        self._kept(entry, pixels)
        self._on_outcome("decoded")
        return pixels

    def _kept(self, entry: concurrent.futures.Future, pixels: torch.Tensor) -> None:
        with self._lock:
            entry.set_result(pixels)
            self.nbytes += pixels.nbytes
            while self.nbytes > self.max_bytes:
                oldest = next((k for k, e in self._entries.items() if e.done()), None)
                if oldest is None:
                    break
                self.nbytes -= self._entries.pop(oldest).result().nbytes
            size = self.nbytes
        self._on_size(size)
