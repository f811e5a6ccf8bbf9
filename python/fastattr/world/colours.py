"""Reading a world image's colours back: background and dominant foreground colour by palette."""

from __future__ import annotations

import numpy as np

from .palette import BACKGROUND_COLOURS, SHAPE_COLOURS

__all__ = ["read_colours"]

_NAMES = list(BACKGROUND_COLOURS) + list(SHAPE_COLOURS)
_RGB = np.asarray(list(BACKGROUND_COLOURS.values()) + list(SHAPE_COLOURS.values()), np.float32)
_N_BG = len(BACKGROUND_COLOURS)


def read_colours(images: np.ndarray) -> list[tuple[str, str | None]]:
    """(background colour, dominant non-background colour) of each uint8 (N, H, W, 3) image.

    Every pixel is assigned to the nearest palette colour (background and shape palettes are
    disjoint). The background is the most frequent background-palette colour; the dominant
    foreground colour is the most frequent shape-palette colour (None if no pixel has one).

    Example:
        >>> from fastattr.world.raster import render
        >>> img = render({"background": "grey", "shapes": [{"shape": "circle", "colour": "red",
        ...     "size": "large", "position": "center", "texture": "plain"}]}, 16)
        >>> read_colours(img[None])
        [('grey', 'red')]
    """
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got {array.shape}.")
    pixels = array.reshape(array.shape[0], -1, 1, 3).astype(np.float32)
    nearest = np.argmin(((pixels - _RGB) ** 2).sum(axis=-1), axis=-1)  # (N, P)
    counts = np.stack([np.bincount(row, minlength=len(_NAMES)) for row in nearest])
    out: list[tuple[str, str | None]] = []
    for row in counts:
        bg = _NAMES[int(np.argmax(row[:_N_BG]))]
        fg = row[_N_BG:]
        out.append((bg, _NAMES[_N_BG + int(np.argmax(fg))] if fg.max() > 0 else None))
    return out
