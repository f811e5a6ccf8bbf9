"""Text-to-image models behind one seam: the DiffusionModel interface and its adapters."""

from __future__ import annotations

from .base import DiffusionModel

__all__ = ["DiffusionModel"]
