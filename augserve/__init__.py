"""augserve: batched, replayable data augmentation on the GPU (or CPU), served over gRPC.

Names load on first use, so ``import augserve.client`` stays thin (no pipeline, no server).
"""

import importlib

from augserve import grpc_fork  # noqa: F401 - first, before any module loads grpc (see grpc_fork)

__version__ = "0.5.0"

_EXPORTS = {
    "AugmentOutput": "augserve.pipeline", "Pipeline": "augserve.pipeline", "PRESETS": "augserve.presets",
    "SpecError": "augserve.spec", "Client": "augserve.client", "AsyncClient": "augserve.client",
    "RemoteAugment": "augserve.client", "RemoteDataset": "augserve.client", "ServerError": "augserve.client",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'augserve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
