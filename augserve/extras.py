"""Optional packages: imported only where they are used, with an error naming the extra that installs them.

Each extra in pyproject.toml holds what its part imports (a test holds the two together): the
client's frameworks, the plots of the trainer and the preview, sktime's bundled datasets.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# module -> (the extra that installs it, its minimum version, what works without it)
OPTIONAL = {
    "torch": ("torch", "2.1", "the numpy Client works without it"),
    "jax": ("jax", "0.4.20", "the numpy Client works without it"),
    "matplotlib": ("plots", "3.8", "training and serving work without it"),
    "sktime": ("data", "0.30", "the other datasets work without it"),
}


def require(module: str, feature: str) -> ModuleType:
    """The module; ImportError naming the extra to install when it is missing."""
    extra, minimum, without = OPTIONAL[module]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{feature} needs {module} (>= {minimum}), which is not installed: "
                          f"pip install 'augserve[{extra}]', or use your environment's own {module}; "
                          f"{without}") from None
