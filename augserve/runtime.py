"""Process-level tuning for CPU throughput, applied by the ``augserve`` command.

glibc serves every allocation above its mmap threshold (128 KiB by default, a
single 224x224 float image is 600 KiB) with a fresh ``mmap`` and returns it on
free, so each batch pays page faults on all of its buffers. Raising the mmap
threshold to glibc's maximum and not trimming the heap lets freed tensors be
reused (bench/RESULTS.md has the measurements). The cost is that the process
keeps its peak heap instead of returning it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit on 64-bit
_NEVER_TRIM = (1 << 31) - 1


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed heap memory; True when applied (False off glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
