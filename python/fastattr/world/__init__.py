"""The embedded default world: a deterministic procedural image–caption dataset (DESIGN.md §5).

Example:
    >>> import tempfile, pathlib
    >>> from fastattr.world import make_world, load_dataset, held_out_captions
    >>> ds = make_world(pathlib.Path(tempfile.mkdtemp()) / "world", n_items=16, seed=0)
    >>> len(load_dataset(ds.path)), isinstance(held_out_captions(3, seed=0)[0], str)
    (16, True)
"""

from __future__ import annotations

from ..data.dataset import Dataset, write_dataset
from ..data.layouts import load_dataset
from .generate import (
    PRESETS,
    generate,
    held_out_attributes,
    held_out_captions,
    make_world,
    sample_attributes,
)
from .palette import BACKGROUND_COLOURS, SHAPE_COLOURS, SHAPES, caption_for, is_held_out
from .raster import render

__all__ = [
    "BACKGROUND_COLOURS",
    "Dataset",
    "PRESETS",
    "SHAPES",
    "SHAPE_COLOURS",
    "caption_for",
    "generate",
    "held_out_attributes",
    "held_out_captions",
    "is_held_out",
    "load_dataset",
    "make_world",
    "render",
    "sample_attributes",
    "write_dataset",
]
