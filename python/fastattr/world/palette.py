"""The embedded world's vocabulary: shapes, colours, sizes, positions, textures and the held-out rule."""

from __future__ import annotations

from typing import Mapping

__all__ = [
    "SHAPES",
    "SHAPE_COLOURS",
    "BACKGROUND_COLOURS",
    "SIZES",
    "MAIN_SIZES",
    "POSITIONS",
    "TEXTURES",
    "is_held_out",
    "caption_for",
]

SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "diamond")

# Shape and background palettes are disjoint and far apart in RGB so that a generated image's
# colours can be read back by nearest-palette classification (scripts/check_t2i_prompts.py).
SHAPE_COLOURS: Mapping[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 50),
    "blue": (30, 70, 230),
    "yellow": (245, 220, 30),
    "purple": (150, 40, 200),
    "cyan": (30, 210, 220),
}
BACKGROUND_COLOURS: Mapping[str, tuple[int, int, int]] = {
    "white": (240, 240, 240),
    "grey": (128, 128, 128),
    "black": (20, 20, 20),
    "brown": (120, 75, 35),
}

# Radius of the shape as a fraction of the image side.
SIZES: Mapping[str, float] = {"small": 0.13, "medium": 0.21, "large": 0.29}
# The main (first-named) shape is never small and the others always are, so the main shape
# holds the most pixels of any foreground colour: its colour is the dominant non-background one.
MAIN_SIZES: tuple[str, ...] = ("medium", "large")
EXTRA_SIZE = "small"

# Centre of each named position as (x, y) fractions of the image side.
POSITIONS: Mapping[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "top left": (0.27, 0.27),
    "top right": (0.73, 0.27),
    "bottom left": (0.27, 0.73),
    "bottom right": (0.73, 0.73),
}

# Rare attributes of the main shape; "plain" is the common case and is not mentioned in captions.
TEXTURES: tuple[str, ...] = ("plain", "striped", "dotted")


def is_held_out(shape: str, colour: str, background: str) -> bool:
    """Whether a (main shape, main colour, background) combination is reserved for held-out prompts.

    The rule is fixed (independent of any seed) so that every world made by this generator
    leaves the same combinations out: one in eight of the 96, spread so that every shape,
    colour and background still appears in training.

    Example:
        >>> sum(is_held_out(s, c, b) for s in SHAPES for c in SHAPE_COLOURS for b in BACKGROUND_COLOURS)
        12
    """
    s = SHAPES.index(shape)
    c = list(SHAPE_COLOURS).index(colour)
    b = list(BACKGROUND_COLOURS).index(background)
    # A Latin-square-like diagonal: for each background, 3 (shape, colour) pairs out of 24.
    return (s * 6 + c * 1 + b * 7) % 8 == 0


def _phrase(shape: Mapping[str, str], *, with_size: bool = True) -> str:
    words = []
    if with_size:
        words.append(shape["size"])
    if shape.get("texture", "plain") != "plain":
        words.append(shape["texture"])
    words += [shape["colour"], shape["shape"]]
    where = "in the center" if shape["position"] == "center" else f"at the {shape['position']}"
    return f"a {' '.join(words)} {where}"


def caption_for(attributes: Mapping[str, object]) -> str:
    """The plain-English caption stating an item's attributes.

    Example:
        >>> caption_for({"background": "grey", "shapes": [
        ...     {"shape": "circle", "colour": "red", "size": "large", "position": "center",
        ...      "texture": "striped"},
        ...     {"shape": "square", "colour": "blue", "size": "small", "position": "top left",
        ...      "texture": "plain"}]})
        'a large striped red circle in the center on a grey background, with a small blue square at the top left'
    """
    shapes = list(attributes["shapes"])  # type: ignore[call-overload]
    text = f"{_phrase(shapes[0])} on a {attributes['background']} background"
    extras = [_phrase(s) for s in shapes[1:]]
    if extras:
        text += ", with " + " and ".join(extras)
    return text
