"""Which of the two plans the ops are running: grouped or branch-free.

The grouped plan (the CPU's) gathers the samples that drew an op and runs the op on them: the least
arithmetic, but which kernels run depends on what was drawn, read on the host. The branch-free plan (a
GPU's) runs every op over the whole batch and selects each sample's result: the same kernels with the
same shapes whatever was drawn, no host read, so a CUDA graph can replay a whole call. Both give the
same bits. ``Pipeline`` applies its steps inside ``branch_free()`` when it runs the device plan; ops that
have two ways ask ``is_branch_free()``.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_BRANCH_FREE = contextvars.ContextVar("augserve_branch_free", default=False)


@contextlib.contextmanager
def branch_free() -> Iterator[None]:
    """Ops called inside run branch-free (in this thread or task)."""
    token = _BRANCH_FREE.set(True)
    try:
        yield
    finally:
        _BRANCH_FREE.reset(token)


def is_branch_free() -> bool:
    return _BRANCH_FREE.get()
