"""Process-level tuning for CPU throughput, applied by the ``augserve`` command and by the first
``Pipeline`` a process builds (``AUGSERVE_KEEP_FREED_MEMORY=0`` opts out).

glibc serves every allocation above its mmap threshold (128 KiB by default, a
single 224x224 float image is 600 KiB) with a fresh ``mmap`` and returns it on
free, so each batch pays page faults on all of its buffers. Raising the mmap
threshold to glibc's maximum and not trimming the heap lets freed tensors be
reused: a 256x3x1000 time warp took 3,200 page faults per call untuned, 0.2 tuned,
and ran 2.3x faster beside another library's calls (bench/RESULTS.md). The cost is
that the process keeps its peak heap instead of returning it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit on 64-bit
_NEVER_TRIM = (1 << 31) - 1


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed heap memory; True when applied (False off glibc or when opted out)."""
    if os.environ.get("AUGSERVE_KEEP_FREED_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))


def dying_with_parent(code: str) -> str:
    """``python -c`` code for a helper process (bench servers, busy neighbours) that Linux kills (SIGKILL)
    when the process that started it dies, even by SIGKILL, so a killed run leaves nothing spinning. Set in
    the child itself (a ``preexec_fn`` is not safe in a parent with threads), which then checks that its
    parent did not die before that."""
    return (f"import ctypes, os; ctypes.CDLL(None).prctl(1, 9)\n"  # PR_SET_PDEATHSIG, SIGKILL
            f"os.getppid() == {os.getpid()} or os._exit(1)\n{code}")


def augserve_command(*args: str) -> list[str]:
    """``python -m augserve.cli ARGS`` as a helper that dies with its parent."""
    import sys

    code = dying_with_parent("import sys; from augserve.cli import main; sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, *args]
