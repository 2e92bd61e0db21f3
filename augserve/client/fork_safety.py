"""DataLoader workers beside a gRPC client: forked where that is safe, else from a clean process, never a crash.

A process forking while another of its threads is inside a gRPC call crashes the child when gRPC core's
fork support is on (``augserve.grpc_fork``: off by default once augserve is imported first). Off, a
forked child that never calls gRPC is safe, which is what a DataLoader worker that only loads data is:
``RemoteAugment`` leaves such loaders forking, so a training script needs no ``__main__`` guard. A forked
child that opens a channel itself would hang, so the client refuses in it with the fix. Where fork support
is on (grpc imported before augserve, or asked for), workers start from the ``forkserver`` (torch
preloaded there), which runs the script again: a script without the guard is refused at once, with why.
"""

from __future__ import annotations

import ast
import logging
import multiprocessing
import os
import pathlib
import sys

from augserve import grpc_fork

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
            "DataLoader(..., multiprocessing_context='forkserver') (or 'spawn'), with the script's own code "
            "under `if __name__ == \"__main__\":`.")
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
    """Leave a torch DataLoader's workers forking where that is safe; else give it the forkserver start method,
    or refuse (RuntimeError naming the fix) when the script would run again without a ``__main__`` guard.

    A loader with a start method of its own, or without workers, is left as it is.
    """
    from torch.utils.data import DataLoader

    if not isinstance(loader, DataLoader) or loader.num_workers == 0 or loader.multiprocessing_context is not None:
        return
    methods = multiprocessing.get_all_start_methods()  # the first is the platform's default
    if (multiprocessing.get_start_method(allow_none=True) or methods[0]) != "fork" or "forkserver" not in methods:
        return  # the program (or platform) starts processes from a clean interpreter already
    if grpc_fork.forked_children_safe():
        return  # workers fork: they load data, and gRPC stays in this process
    if not _main_is_guarded():
        raise RuntimeError(
            f"RemoteAugment: gRPC's fork support is on ({grpc_fork.VARIABLE}, or grpc imported before augserve), "
            "so DataLoader workers cannot fork beside this client and must start from the forkserver, which runs "
            f"{sys.modules['__main__'].__file__} again. Import augserve before grpc (or set "
            f"{grpc_fork.VARIABLE}=0), or put the training code under `if __name__ == \"__main__\":`.")
    log.debug("RemoteAugment: DataLoader workers start from the forkserver (gRPC's fork support is on)")
    loader.multiprocessing_context = worker_context()


def _main_is_guarded() -> bool:
    """Whether the main script can be run again by a worker: guarded by ``if __name__ == "__main__":``, or no file."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if path is None:
        return True  # interactive: nothing is run again
    try:
        tree = ast.parse(pathlib.Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return True  # not ours to judge
    return any(isinstance(node, ast.If) and _is_main_test(node.test) for node in tree.body)


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"``, either way round."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(side, ast.Name) and side.id == "__name__" for side in sides) and \
        any(isinstance(side, ast.Constant) and side.value == "__main__" for side in sides)
