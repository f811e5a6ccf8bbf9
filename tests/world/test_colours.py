"""Tests for world/colours.py: reading colours back with the palette."""

from __future__ import annotations

import numpy as np
import pytest

from fastattr.world import generate, held_out_attributes, render
from fastattr.world.colours import read_colours


def test_reads_the_truth_of_generated_items() -> None:
    images, _, attributes = generate(300, seed=5, image_size=16)
    read = read_colours(images)
    bg_ok = np.mean([r[0] == a["background"] for r, a in zip(read, attributes)])
    fg_ok = np.mean([r[1] == a["shapes"][0]["colour"] for r, a in zip(read, attributes)])
    assert bg_ok == 1.0
    assert fg_ok >= 0.98


def test_held_out_renders_read_back() -> None:
    truth = held_out_attributes(50, seed=1)
    read = read_colours(np.stack([render(a, 16) for a in truth]))
    assert [r[0] for r in read] == [a["background"] for a in truth]


def test_plain_background_has_no_foreground_and_bad_shape_is_refused() -> None:
    grey = np.full((1, 4, 4, 3), 128, np.uint8)
    assert read_colours(grey) == [("grey", None)]
    with pytest.raises(ValueError, match="must be"):
        read_colours(np.zeros((4, 4, 3), np.uint8))
