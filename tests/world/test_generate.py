"""Tests for world/generate.py: determinism, attribute rules, held-out prompts, make_world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastattr.errors import DatasetError
from fastattr.world import (
    PRESETS,
    generate,
    held_out_attributes,
    held_out_captions,
    is_held_out,
    load_dataset,
    make_world,
)


def test_deterministic_for_a_seed_and_independent_of_size() -> None:
    a = generate(30, seed=3, image_size=16)
    b = generate(30, seed=3, image_size=16)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    prefix = generate(10, seed=3, image_size=16)
    assert np.array_equal(prefix[0], a[0][:10]) and prefix[1] == a[1][:10]
    other = generate(30, seed=4, image_size=16)
    assert other[1] != a[1]


def test_attribute_rules_hold() -> None:
    _, captions, attributes = generate(600, seed=0, image_size=8)
    counts = {1: 0, 2: 0, 3: 0}
    textured = 0
    for caption, attrs in zip(captions, attributes):
        main, *extras = attrs["shapes"]
        counts[len(attrs["shapes"])] += 1
        textured += main["texture"] != "plain"
        assert main["size"] in ("medium", "large")
        assert all(e["size"] == "small" and e["colour"] != main["colour"] for e in extras)
        assert len({s["position"] for s in attrs["shapes"]}) == len(attrs["shapes"])
        assert not is_held_out(main["shape"], main["colour"], attrs["background"])
        assert caption.startswith(f"a {main['size']}") and f"{attrs['background']} background" in caption
    assert all(c > 50 for c in counts.values())
    assert 5 <= textured <= 80  # a few percent are striped or dotted


def test_held_out_captions_never_appear_in_training() -> None:
    _, captions, _ = generate(2000, seed=0, image_size=4)
    held = held_out_captions(200, seed=0)
    assert len(held) == 200 and not set(held) & set(captions)
    assert held_out_captions(20, seed=0) == held[:20]
    assert held_out_captions(20, seed=1) != held[:20]
    for attrs in held_out_attributes(50, seed=0):
        main = attrs["shapes"][0]
        assert is_held_out(main["shape"], main["colour"], attrs["background"])


def test_make_world_writes_a_loadable_folder(tmp_path: Path) -> None:
    ds = make_world(tmp_path / "w", n_items=12, seed=2, image_size=16)
    images, captions, attributes = generate(12, seed=2, image_size=16)
    again = load_dataset(tmp_path / "w")
    assert np.array_equal(np.asarray(again.images), images)
    assert again.captions == captions and again.attributes == attributes
    assert again.item_ids.dtype == np.uint64 and again.item_ids.tolist() == list(range(12))
    assert len(ds) == 12 and ds.meta["seed"] == 2 and ds.image_size == (16, 16)
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [
        "dataset.json", "images.npy", "items.jsonl"]


def test_presets_and_bad_parameters() -> None:
    assert PRESETS["full"] == {"n_items": 10000, "image_size": 32}
    with pytest.raises(DatasetError, match="n_items must be a positive integer"):
        generate(0)
    with pytest.raises(DatasetError, match="image_size must be an integer"):
        generate(3, image_size=(16, 16))  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="n must be a non-negative integer"):
        held_out_captions(-1)
