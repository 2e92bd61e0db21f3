"""gRPC does not survive ``fork``: which start method DataLoader workers get, and a clear refusal where it matters.

grpcio builds gRPC core with fork support on, but gRPC Python's own fork handlers (which pause its
polling threads before a fork) only run when ``GRPC_ENABLE_FORK_SUPPORT`` is set. When a process
forks while another of its threads is inside a gRPC call, core skips its pre-fork step ("Other
threads are currently calling into gRPC, skipping fork() handlers") yet its event engine restarts
its thread pool in the child over poller state copied mid-call: the child aborts (``Check failed:
next_worker->state == KICKED``) or dies with SIGSEGV, even if it never calls gRPC itself. With fork
support off, no thread is restarted, and a child that opens a channel hangs instead. Neither can be
mended from Python, so, as gRPC's and Python 3.14's own guidance goes, workers of a process that uses
gRPC start from a clean process: the ``forkserver`` (torch preloaded there, so each epoch's workers
start in about the time a fork takes) or ``spawn``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os

log = logging.getLogger("augserve.client")

PRELOAD = "torch"  # what every DataLoader worker imports: loaded once in the fork server, not per worker
_state = {"channels": False, "forked": False}  # this process opened a channel / was forked after one was


def _after_fork_in_child() -> None:
    _state["forked"] = _state["forked"] or _state["channels"]


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere nothing forks
    os.register_at_fork(after_in_child=_after_fork_in_child)


def channel_opening() -> None:
    """Called before every channel opens: refuses in a child forked from a process that had channels."""
    if _state["forked"]:
        raise RuntimeError(
            "augserve client: this process was forked from one that had opened gRPC channels, and gRPC "
            "cannot run in such a child (it hangs or crashes). Start the workers from a clean process: "
            "DataLoader(..., multiprocessing_context='forkserver') (or 'spawn'), as RemoteAugment does "
            "for the loaders it wraps.")
    _state["channels"] = True


def worker_context() -> multiprocessing.context.BaseContext:
    """The ``forkserver`` context, with torch preloaded in the server unless it already runs."""
    from multiprocessing import forkserver  # POSIX only: imported where it is used

    context = multiprocessing.get_context("forkserver")
    preload = list(getattr(forkserver._forkserver, "_preload_modules", ["__main__"]))
    if PRELOAD not in preload:
        context.set_forkserver_preload([*preload, PRELOAD])  # no effect once the server runs, by design
    return context


def make_workers_fork_safe(loader) -> None:
    """Give a torch DataLoader whose workers would ``fork`` the forkserver start method instead.

    A loader with a start method of its own, or without workers, is left as it is.
    """
    from torch.utils.data import DataLoader

    if not isinstance(loader, DataLoader) or loader.num_workers == 0 or loader.multiprocessing_context is not None:
        return
    methods = multiprocessing.get_all_start_methods()  # the first is the platform's default
    if (multiprocessing.get_start_method(allow_none=True) or methods[0]) != "fork" or "forkserver" not in methods:
        return  # the program (or platform) starts processes from a clean interpreter already
    log.debug("RemoteAugment: DataLoader workers start from the forkserver (gRPC does not survive fork)")
    loader.multiprocessing_context = worker_context()
