"""Tests for world/raster.py: antialiased rasterization of attributes."""

from __future__ import annotations

import numpy as np
import pytest

from fastattr.world.raster import render


def _item(shape: str = "circle", texture: str = "plain", size: str = "large") -> dict:
    return {"background": "white", "shapes": [
        {"shape": shape, "colour": "blue", "size": size, "position": "center", "texture": texture}]}


@pytest.mark.parametrize("side", [8, 16, 32])
def test_size_dtype_and_colours(side: int) -> None:
    img = render(_item(), side)
    assert img.shape == (side, side, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (240, 240, 240)             # background corner
    assert tuple(img[side // 2, side // 2]) == (30, 70, 230)  # shape centre


def test_shapes_differ_and_edges_are_antialiased() -> None:
    images = {s: render(_item(s), 16) for s in ("square", "circle", "triangle", "diamond")}
    names = list(images)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.array_equal(images[a], images[b]), (a, b)
    # Some pixels are mixtures of shape and background, not either colour.
    flat = images["circle"].reshape(-1, 3)
    pure = (flat == [240, 240, 240]).all(1) | (flat == [30, 70, 230]).all(1)
    assert (~pure).sum() > 0


def test_textures_change_the_shape_and_keep_it_mostly_its_colour() -> None:
    plain = render(_item(texture="plain"), 32)
    for texture in ("striped", "dotted"):
        textured = render(_item(texture=texture), 32)
        changed = (textured != plain).any(-1).mean()
        assert 0.02 < changed < 0.3, texture


def test_main_shape_is_drawn_last() -> None:
    item = _item()
    item["shapes"].append({"shape": "square", "colour": "red", "size": "large",
                           "position": "center", "texture": "plain"})
    assert tuple(render(item, 16)[8, 8]) == (30, 70, 230)


def test_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        render(_item("hexagon"), 16)
