"""fastattr: fast data attribution for text-to-image models.

The public names load lazily, so ``import fastattr`` stays cheap and never imports torch.

Example:
    >>> import fastattr
    >>> fastattr.FastattrError.__name__
    'FastattrError'
"""

from __future__ import annotations

from ._lazy import lazy_exports
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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, globals())
