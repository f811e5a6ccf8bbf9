"""Lazy package exports: a public name imports its defining module on first access (keeps torch out of imports)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, table: dict[str, str], public: list[str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package``.

    Args:
        package: the package's ``__name__``.
        table: public name -> module that defines it, absolute (``"fastattr.x.y"``) or relative to
            ``package`` (``".y"``); ``"module:attr"`` exports ``attr`` under the public name.
        public: the package's ``__all__``.
        namespace: the package's ``globals()``; a resolved name is cached there.

    Example:
        >>> getattr_, dir_ = lazy_exports("demo", {"sqrt": "math"}, ["sqrt"], {})
        >>> getattr_("sqrt")(9.0)
        3.0
    """

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = target.partition(":")
        value = getattr(importlib.import_module(module, package), attr or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__
