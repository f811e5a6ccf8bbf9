"""Tests for world/palette.py: the held-out rule and captions."""

from __future__ import annotations

from fastattr.world.palette import (
    BACKGROUND_COLOURS,
    SHAPE_COLOURS,
    SHAPES,
    caption_for,
    is_held_out,
)


def test_held_out_rule_leaves_every_value_in_training() -> None:
    combos = [(s, c, b) for s in SHAPES for c in SHAPE_COLOURS for b in BACKGROUND_COLOURS]
    held = [x for x in combos if is_held_out(*x)]
    train = [x for x in combos if not is_held_out(*x)]
    assert len(held) == 12
    for position, values in enumerate((SHAPES, SHAPE_COLOURS, BACKGROUND_COLOURS)):
        assert {x[position] for x in train} == set(values)
        assert {x[position] for x in held} <= set(values)


def test_caption_states_every_attribute() -> None:
    caption = caption_for({"background": "black", "shapes": [
        {"shape": "diamond", "colour": "cyan", "size": "medium", "position": "bottom right",
         "texture": "dotted"},
        {"shape": "triangle", "colour": "red", "size": "small", "position": "center",
         "texture": "plain"},
        {"shape": "circle", "colour": "green", "size": "small", "position": "top left",
         "texture": "plain"},
    ]})
    assert caption == (
        "a medium dotted cyan diamond at the bottom right on a black background, with a small "
        "red triangle in the center and a small green circle at the top left"
    )
