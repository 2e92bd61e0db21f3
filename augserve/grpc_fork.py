"""gRPC core's fork support off unless the environment asks for it: what lets a DataLoader fork beside a client.

grpcio builds gRPC core with fork support on: at every ``fork`` its handlers restart the event engine's
threads in the child over poller state copied from the parent. When another thread of the parent is inside
a gRPC call at that moment (a streaming client, a server), the child aborts (``Check failed:
next_worker->state == KICKED``) or dies with SIGSEGV, even if it never calls gRPC. With it off the child
starts with no gRPC threads, which is all a child that only loads data needs. Core reads the setting when
grpc is first imported, so the package sets it before any of its modules imports grpc (``augserve/__init__``
imports this first); ``forked_children_safe`` says whether that took effect.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "GRPC_ENABLE_FORK_SUPPORT"
_ON = ("1", "true", "yes", "on")

_loaded_first = "grpc" in sys.modules and VARIABLE not in os.environ  # with core's default: on
os.environ.setdefault(VARIABLE, "0")
_SAFE = not _loaded_first and os.environ[VARIABLE].strip().lower() not in _ON


def forked_children_safe() -> bool:
    """Whether a child forked while this process's gRPC calls run survives (it must not call gRPC itself)."""
    return _SAFE
