"""fastattr: fast data attribution for text-to-image models.

The public names load lazily, so ``import fastattr`` stays cheap and never imports torch.

Example:
    >>> import fastattr
    >>> fastattr.FastattrError.__name__
    'FastattrError'
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    BundleError,
    CheckpointError,
    DatasetError,
    DeviceError,
    FastattrError,
    IndexFormatError,
    IndexQueryError,
    InputError,
    MissingDependencyError,
)

__version__ = "0.1.0"

__all__ = [
    "Attributor",
    "Attribution",
    "BundleError",
    "CheckpointError",
    "DatasetError",
    "DeviceError",
    "FastattrError",
    "IndexFormatError",
    "IndexQueryError",
    "InputError",
    "MissingDependencyError",
    "__version__",
]

# Public name -> module that defines it; imported on first access.
_LAZY = {
    "Attributor": "fastattr.attributor",
    "Attribution": "fastattr.results",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastattr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
