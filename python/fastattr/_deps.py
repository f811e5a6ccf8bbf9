"""Imports of optional dependencies with an error that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, feature: str, extra: str = "train") -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming the extra that provides it.

    Example:
        >>> np = require("numpy", feature="fastattr.index", extra="cpu")
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs {module.split('.')[0]}. "
            f'Install the {extra} extra: pip install "fastattr[{extra}]"'
        ) from exc
