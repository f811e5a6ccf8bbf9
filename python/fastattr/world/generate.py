"""The deterministic procedural generator: attributes per item, rendered images, held-out prompts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import check_replaceable
from .._progress import make_progress
from ..errors import DatasetError
from ..data.dataset import Dataset, write_dataset
from ..data.layouts import load_dataset
from .palette import (
    BACKGROUND_COLOURS,
    EXTRA_SIZE,
    MAIN_SIZES,
    POSITIONS,
    SHAPE_COLOURS,
    SHAPES,
    SIZES,
    caption_for,
    is_held_out,
)
from .raster import render

__all__ = [
    "sample_attributes", "generate", "make_world", "held_out_captions", "held_out_attributes", "PRESETS",
]

# Named sizes of the world. "demo" is the default: small enough that the whole pipeline
# (T2I training, teacher, student) fits the demo's time budget on 2 CPU cores (DESIGN.md §5);
# "full" is the full-size world.
PRESETS: dict[str, dict[str, int]] = {
    "demo": {"n_items": 2500, "image_size": 16},
    "full": {"n_items": 10000, "image_size": 32},
    "tiny": {"n_items": 64, "image_size": 16},
}

_SHAPE_COUNT_P = (0.5, 0.3, 0.2)  # one, two, three shapes
_TEXTURE_P = {"plain": 0.94, "striped": 0.03, "dotted": 0.03}
_HELD_OUT = [
    (s, c, b)
    for s in SHAPES
    for c in SHAPE_COLOURS
    for b in BACKGROUND_COLOURS
    if is_held_out(s, c, b)
]
_TRAIN_COMBOS = [
    (s, c, b)
    for s in SHAPES
    for c in SHAPE_COLOURS
    for b in BACKGROUND_COLOURS
    if not is_held_out(s, c, b)
]


def _jitter_rgb(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> list[int]:
    noise = rng.integers(-amount, amount + 1, size=3)
    return [int(v) for v in np.clip(np.asarray(rgb) + noise, 0, 255)]


def sample_attributes(seed: int, index: int, *, held_out: bool = False) -> dict[str, Any]:
    """The attributes of item ``index`` of the world with ``seed`` (independent of the world's size).

    With ``held_out=True`` the main (shape, colour, background) is one of the combinations
    that training never uses (see ``palette.is_held_out``), drawn from a separate stream.

    Example:
        >>> a = sample_attributes(0, 3)
        >>> sorted(a)
        ['background', 'background_rgb', 'shapes']
        >>> a == sample_attributes(0, 3)
        True
    """
    rng = np.random.default_rng([int(seed), int(index), 1 if held_out else 0])
    combos = _HELD_OUT if held_out else _TRAIN_COMBOS
    shape, colour, background = combos[int(rng.integers(len(combos)))]
    n_shapes = int(rng.choice(3, p=_SHAPE_COUNT_P)) + 1
    positions = list(POSITIONS)
    order = rng.permutation(len(positions))
    texture = str(rng.choice(list(_TEXTURE_P), p=list(_TEXTURE_P.values())))
    size = MAIN_SIZES[int(rng.integers(len(MAIN_SIZES)))]
    shapes = [{"shape": shape, "colour": colour, "size": size, "texture": texture,
               "position": positions[int(order[0])]}]
    others = [c for c in SHAPE_COLOURS if c != colour]  # the main colour stays unique
    for k in range(1, n_shapes):
        shapes.append({
            "shape": SHAPES[int(rng.integers(len(SHAPES)))],
            "colour": others[int(rng.integers(len(others)))],
            "size": EXTRA_SIZE,
            "texture": "plain",
            "position": positions[int(order[k])],
        })
    for s in shapes:
        # Small jitter of place, size and colour so that no two items are pixel-identical.
        cx, cy = POSITIONS[s["position"]]
        s["cx"] = round(cx + float(rng.uniform(-0.04, 0.04)), 4)
        s["cy"] = round(cy + float(rng.uniform(-0.04, 0.04)), 4)
        s["radius"] = round(SIZES[s["size"]] * float(rng.uniform(0.9, 1.1)), 4)
        s["rgb"] = _jitter_rgb(rng, SHAPE_COLOURS[s["colour"]], 12)
    return {
        "background": background,
        "background_rgb": _jitter_rgb(rng, BACKGROUND_COLOURS[background], 10),
        "shapes": shapes,
    }


def generate(
    n_items: int, *, seed: int = 0, image_size: int = 16, held_out: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    """Generate ``n_items`` items in memory: (uint8 images N×H×W×3, captions, attributes).

    Example:
        >>> images, captions, attrs = generate(4, seed=1, image_size=16)
        >>> images.shape, len(captions), attrs[0]["shapes"][0]["size"] in ("medium", "large")
        ((4, 16, 16, 3), 4, True)
    """
    _check_params(n_items, image_size)
    images = np.empty((n_items, image_size, image_size, 3), dtype=np.uint8)
    attributes: list[dict[str, Any]] = []
    for i in make_progress(range(n_items), desc="world", unit="item", disable=not progress):
        attrs = sample_attributes(seed, i, held_out=held_out)
        images[i] = render(attrs, image_size)
        attributes.append(attrs)
    return images, [caption_for(a) for a in attributes], attributes


def _check_params(n_items: int, image_size: Any) -> None:
    if not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise DatasetError(f"n_items must be a positive integer, got {n_items!r}.")
    if not isinstance(image_size, (int, np.integer)) or not 4 <= image_size <= 1024:
        raise DatasetError(
            f"image_size must be an integer side length between 4 and 1024, got {image_size!r} "
            "(the world renders square images)."
        )


def make_world(
    path: str | os.PathLike[str], *, n_items: int = PRESETS["demo"]["n_items"], seed: int = 0,
    image_size: int = PRESETS["demo"]["image_size"], progress: bool = False, overwrite: bool = False,
) -> Dataset:
    """Generate the world and write it as a dataset folder (atomically); returns it loaded.

    An existing folder at ``path`` is replaced only if it is a dataset folder, or with ``overwrite``.

    Example:
        >>> import tempfile, pathlib
        >>> ds = make_world(pathlib.Path(tempfile.mkdtemp()) / "w", n_items=8, seed=0)
        >>> len(ds), ds.images.shape[1:]
        (8, (16, 16, 3))
    """
    check_replaceable(Path(path), "dataset.json", overwrite=overwrite, what="dataset folder")   # before generating
    images, captions, attributes = generate(
        n_items, seed=seed, image_size=image_size, progress=progress
    )
    write_dataset(
        path, images, captions, attributes,
        meta={"generator": "fastattr.world", "seed": int(seed), "held_out_rule": "palette.is_held_out"},
        overwrite=overwrite,
    )
    return load_dataset(path)


def held_out_captions(n: int, seed: int = 0) -> list[str]:
    """Captions whose main (shape, colour, background) combination no training item of any world has.

    Deterministic for (n, seed); the first k of ``held_out_captions(n, s)`` equal
    ``held_out_captions(k, s)``.

    Example:
        >>> held_out_captions(2, seed=0) == held_out_captions(2, seed=0)
        True
    """
    return [caption_for(a) for a in held_out_attributes(n, seed)]


def held_out_attributes(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """The attributes behind ``held_out_captions(n, seed)`` (for checkers that need the truth)."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise DatasetError(f"n must be a non-negative integer, got {n!r}.")
    return [sample_attributes(seed, i, held_out=True) for i in range(n)]
