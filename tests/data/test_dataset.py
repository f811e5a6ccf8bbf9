"""Tests for data/dataset.py and data/layouts.py: the array layout and items.jsonl image folders, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastattr.errors import DatasetError
from fastattr.world import Dataset, load_dataset, make_world, write_dataset


@pytest.fixture()
def world(tmp_path: Path) -> Path:
    make_world(tmp_path / "w", n_items=6, seed=0, image_size=8)
    return tmp_path / "w"


def test_array_layout_is_memory_mapped(world: Path) -> None:
    ds = load_dataset(world)
    assert isinstance(ds, Dataset) and isinstance(ds.images, np.memmap)
    assert ds.images.dtype == np.uint8 and ds.images.shape == (6, 8, 8, 3)
    assert len(ds.captions) == len(ds.attributes) == 6 and ds.uris is None


def test_write_replaces_atomically_and_keeps_ids_and_uris(tmp_path: Path) -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    write_dataset(tmp_path / "d", images, ["a", "b"], item_ids=[7, 3], uris=["x.png", None])
    write_dataset(tmp_path / "d", images[:1], ["c"], meta={"note": "second"})
    ds = load_dataset(tmp_path / "d")
    assert ds.captions == ["c"] and ds.meta["note"] == "second"
    write_dataset(tmp_path / "e", images, ["a", "b"], item_ids=[7, 3], uris=["x.png", None])
    ds = load_dataset(tmp_path / "e")
    assert ds.item_ids.tolist() == [7, 3] and ds.uris == ["x.png", None]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="must be uint8"):
        write_dataset(tmp_path / "d", np.zeros((1, 4, 4, 3), np.float32), ["a"])
    with pytest.raises(DatasetError, match="one entry per item"):
        write_dataset(tmp_path / "d", np.zeros((2, 4, 4, 3), np.uint8), ["a"])
    with pytest.raises(DatasetError, match="uris has 1 entries"):
        write_dataset(tmp_path / "d", np.zeros((2, 4, 4, 3), np.uint8), ["a", "b"], uris=["u"])
    assert not (tmp_path / "d").exists()


def test_missing_folder_and_files(tmp_path: Path, world: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no items.jsonl"):
        load_dataset(tmp_path / "empty")
    (world / "images.npy").unlink()
    with pytest.raises(DatasetError, match="no images.npy"):
        load_dataset(world)


@pytest.mark.parametrize("header, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "other", "version": 1}', "does not declare format"),
    ('{"format": "fastattr-dataset", "version": 9, "n_items": 6}', "has version 9"),
    ('{"format": "fastattr-dataset", "version": 1, "n_items": 5}', "n_items=5"),
])
def test_bad_header(world: Path, header: str, message: str) -> None:
    (world / "dataset.json").write_text(header)
    with pytest.raises(DatasetError, match=message):
        load_dataset(world)


def test_corrupt_images_and_items(world: Path) -> None:
    good = (world / "images.npy").read_bytes()
    (world / "images.npy").write_bytes(b"garbage" * 10)
    with pytest.raises(DatasetError, match="cannot be read as an array"):
        load_dataset(world)
    np.save(world / "images.npy", np.zeros((6, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="must hold uint8"):
        load_dataset(world)
    (world / "images.npy").write_bytes(good)
    lines = (world / "items.jsonl").read_text().splitlines()
    (world / "items.jsonl").write_text("\n".join(lines[:2] + ["{broken"] + lines[3:]) + "\n")
    with pytest.raises(DatasetError, match="line 3 is not valid JSON"):
        load_dataset(world)
    rows = [json.loads(line) for line in lines]
    rows[1]["item_id"] = rows[0]["item_id"]
    (world / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match="must be unique"):
        load_dataset(world)
    rows[1]["item_id"] = -4
    (world / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match="non-negative integer"):
        load_dataset(world)
    del rows[1]["caption"]
    (world / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match='string "caption"'):
        load_dataset(world)


def _image_folder(root: Path, sizes: list[int]) -> Path:
    (root / "images").mkdir(parents=True)
    rows = []
    for i, size in enumerate(sizes):
        Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.png")
        rows.append({"image": f"images/{i}.png", "caption": f"item {i}", "item_id": 10 + i})
    (root / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_user_image_folder(tmp_path: Path) -> None:
    ds = load_dataset(_image_folder(tmp_path / "u", [6, 6, 6]))
    assert ds.images.shape == (3, 6, 6, 3) and ds.captions[2] == "item 2"
    assert ds.item_ids.tolist() == [10, 11, 12] and ds.uris == [f"images/{i}.png" for i in range(3)]
    assert ds.images[1, 0, 0, 0] == 40


def test_user_image_folder_sizes(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "u", [6, 9])
    with pytest.raises(DatasetError, match="pass image_size"):
        load_dataset(root)
    assert load_dataset(root, image_size=4).images.shape == (2, 4, 4, 3)


def test_user_image_folder_refusals(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "u", [6])
    (root / "items.jsonl").write_text(json.dumps({"image": "../x.png", "caption": "c"}) + "\n")
    with pytest.raises(DatasetError, match="leaves the folder"):
        load_dataset(root)
    (root / "items.jsonl").write_text(json.dumps({"caption": "c"}) + "\n")
    with pytest.raises(DatasetError, match='no "image" path'):
        load_dataset(root)
    (root / "images" / "0.png").write_bytes(b"not a png")
    (root / "items.jsonl").write_text(json.dumps({"image": "images/0.png", "caption": "c"}) + "\n")
    with pytest.raises(DatasetError, match="cannot read image"):
        load_dataset(root)
    (root / "items.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="lists no items"):
        load_dataset(root)
