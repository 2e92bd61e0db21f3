"""The optional frameworks of the client: imported only by their adapters, with a clear error when absent."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {"torch": "torch", "jax": "jax"}  # framework -> the extra that installs it
MINIMUM = {"torch": "2.1", "jax": "0.4.20"}


def require(framework: str, feature: str) -> ModuleType:
    """The framework's module; ImportError naming the extra to install when it is missing."""
    try:
        return importlib.import_module(framework)
    except ImportError:
        raise ImportError(f"{feature} needs {framework} (>= {MINIMUM[framework]}), which is not installed: "
                          f"pip install 'augserve[{EXTRAS[framework]}]', or use your environment's own "
                          f"{framework}; the numpy Client works without it") from None
