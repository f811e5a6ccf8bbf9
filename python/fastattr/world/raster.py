"""Rasterizing one item's attributes into an antialiased uint8 RGB image (supersample, then box-average)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from .palette import BACKGROUND_COLOURS, POSITIONS, SHAPE_COLOURS, SIZES

__all__ = ["render", "SUPERSAMPLE"]

# Shapes are drawn on a grid this many times finer than the output and averaged down, so that
# even at 16x16 their edges are smooth and a circle reads differently from a square.
SUPERSAMPLE = 4


@lru_cache(maxsize=8)
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    # Pixel centres as fractions of the side, shared by every item of one size.
    coords = (np.arange(side, dtype=np.float32) + 0.5) / side
    return coords[None, :], coords[:, None]


def _mask(kind: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    if kind == "circle":
        return dx * dx + dy * dy <= radius * radius
    if kind == "square":
        # 0.85 r half-side gives a square about as heavy as the circle of radius r.
        half = 0.85 * radius
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if kind == "triangle":
        # Apex up at -r, base at +0.75 r, half-width r at the base.
        return (dy >= -radius) & (dy <= 0.75 * radius) & (np.abs(dx) <= (dy + radius) / 1.75)
    if kind == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.15 * radius
    raise ValueError(f"unknown shape {kind!r}")


def _texture(kind: str, x: np.ndarray, y: np.ndarray, period: float) -> np.ndarray | None:
    # Returns the sub-mask that gets the texture's second shade, or None for plain shapes.
    if kind == "plain":
        return None
    if kind == "striped":
        return np.floor((x + y) / period) % 2 == 1
    if kind == "dotted":
        fx = (x / period) % 1.0 - 0.5
        fy = (y / period) % 1.0 - 0.5
        return fx * fx + fy * fy <= 0.09
    raise ValueError(f"unknown texture {kind!r}")


def render(attributes: Mapping[str, Any], image_size: int) -> np.ndarray:
    """Draw an item: background, then the extra shapes, then the main shape on top.

    ``attributes`` holds ``background``, optional ``background_rgb`` and a list ``shapes`` whose
    first entry is the main shape; each shape has ``shape``, ``colour``, ``size``, ``position``,
    ``texture`` and optionally the exact ``cx``, ``cy``, ``radius`` (fractions) and ``rgb``.

    Example:
        >>> img = render({"background": "grey", "shapes": [{"shape": "circle", "colour": "red",
        ...     "size": "large", "position": "center", "texture": "plain"}]}, 16)
        >>> img.shape, img.dtype, img[8, 8].tolist()
        ((16, 16, 3), dtype('uint8'), [220, 30, 30])
    """
    side = image_size * SUPERSAMPLE
    x, y = _grid(side)
    bg = attributes.get("background_rgb") or BACKGROUND_COLOURS[attributes["background"]]
    canvas = np.empty((side, side, 3), dtype=np.float32)
    canvas[:] = np.asarray(bg, dtype=np.float32)
    shapes = list(attributes["shapes"])
    # Main shape last, so it is never hidden under an extra one.
    for shape in shapes[1:] + shapes[:1]:
        cx, cy = shape.get("cx"), shape.get("cy")
        if cx is None or cy is None:
            cx, cy = POSITIONS[shape["position"]]
        radius = shape.get("radius") or SIZES[shape["size"]]
        rgb = np.asarray(shape.get("rgb") or SHAPE_COLOURS[shape["colour"]], dtype=np.float32)
        inside = _mask(shape["shape"], x - cx, y - cy, radius)
        canvas[inside] = rgb
        # A period of half the radius (at least 2 output pixels) keeps stripes visible at 16 px.
        second = _texture(shape.get("texture", "plain"), x, y, max(radius * 0.5, 2.0 / image_size))
        if second is not None:
            shade = rgb * 0.45 if shape["texture"] == "striped" else rgb + (255.0 - rgb) * 0.6
            canvas[inside & second] = shade
    small = canvas.reshape(image_size, SUPERSAMPLE, image_size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)
