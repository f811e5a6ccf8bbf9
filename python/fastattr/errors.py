"""The error classes that fastattr raises on purpose; each also inherits the builtin a caller expects."""

from __future__ import annotations

__all__ = [
    "FastattrError",
    "IndexFormatError",
    "IndexQueryError",
    "BundleError",
    "DatasetError",
    "CheckpointError",
    "InputError",
    "DeviceError",
    "MissingDependencyError",
]


class FastattrError(Exception):
    """Base class of every error fastattr raises on purpose."""


class IndexFormatError(FastattrError, ValueError):
    """A file is not a valid fastattr index (foreign, truncated or corrupted)."""


class IndexQueryError(FastattrError, ValueError):
    """A search was asked something it cannot answer (wrong dim, NaN, bad k)."""


class BundleError(FastattrError, ValueError):
    """A bundle's manifest, checksum, version or paths cannot be trusted."""


class DatasetError(FastattrError, ValueError):
    """A dataset folder is missing files or holds inconsistent data."""


class CheckpointError(FastattrError, ValueError):
    """A model checkpoint or stage output is missing, incomplete or inconsistent."""


class InputError(FastattrError, ValueError):
    """A query input (image, prompt, k, ...) is not usable."""


class DeviceError(FastattrError, RuntimeError):
    """The requested execution device is not available."""


class MissingDependencyError(FastattrError, ImportError):
    """An optional dependency needed by this feature is not installed."""
