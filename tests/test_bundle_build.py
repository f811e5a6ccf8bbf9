"""Tests of fastattr.bundle_build: its steps one by one, bundles from supplied (precomputed) vectors, extra variants,
bad input, and the `bundle build` / `index build` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import _export_kit as kit
import fastattr
from fastattr.bundle import Items
from fastattr.bundle_build import build_bundle, check_output, embedder_files, write_index, write_items, write_thumbnails
from fastattr.errors import InputError


@pytest.fixture(scope="module")
def item_vectors() -> np.ndarray:
    """The stand-in's own embeddings of every item, as a caller would have precomputed them."""
    attributor = fastattr.Attributor.load(kit.bundle(), device="cpu", threads=1, verify="sizes")
    data = kit.dataset()
    return attributor.embed(list(data.images), list(data.captions))


def _build(out: Path, vectors, **kwargs) -> Path:
    return build_bundle(out, embedder=kit.root() / "export", dataset=kit.dataset(), progress=False,
                        vectors=vectors, **kwargs)


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def test_embedded_build_records_its_vectors_source():
    assert _manifest(kit.bundle())["provenance"]["item_vectors"] == {"source": "embedder"}


def test_bundle_from_supplied_vectors_opens_and_queries(tmp_path, item_vectors):
    data = kit.dataset()
    # Row i gets item (i + 1)'s vector: if the index used these rows (and not fresh embeddings),
    # item 7's own image and caption find the item stored in row 6.
    shifted = np.ascontiguousarray(np.roll(item_vectors, -1, axis=0))
    root = _build(tmp_path / "b", shifted, thumbnail_size=0, provenance={"note": "test"})
    manifest = _manifest(root)
    assert manifest["provenance"]["item_vectors"]["source"] == "supplied"
    assert manifest["provenance"]["item_vectors"]["rows"] == kit.N_ITEMS and manifest["provenance"]["note"] == "test"
    assert "thumbnails" not in manifest["roles"]
    attributor = fastattr.Attributor.load(root, device="cpu", threads=1)
    hits = attributor.query(data.images[7], data.captions[7], k=3)
    assert hits[0].item_id == int(data.item_ids[6]) and hits[0].caption == data.captions[6]
    assert hits[0].score > 0.99


def test_blocks_give_the_same_bundle_as_one_array(tmp_path, item_vectors):
    data = kit.dataset()
    whole = _build(tmp_path / "whole", item_vectors)
    blocks = _build(tmp_path / "blocks", (item_vectors[i:i + 10] for i in range(0, kit.N_ITEMS, 10)))
    assert (whole / "index.fai").read_bytes() == (blocks / "index.fai").read_bytes()
    a, b = (fastattr.Attributor.load(r, device="cpu", threads=1) for r in (whole, blocks))
    assert a.query(data.images[3], data.captions[3], k=5) == b.query(data.images[3], data.captions[3], k=5)
    assert a.query(data.images[3], data.captions[3], k=1)[0].item_id == int(data.item_ids[3])


def test_extra_variants(tmp_path, item_vectors):
    exported = kit.exported()
    root = _build(tmp_path / "b", item_vectors, variants={"embedder_custom": exported.onnx_path})
    assert _manifest(root)["roles"]["embedder_custom"] == "embedder.custom.onnx"
    with pytest.raises(InputError, match="roles must start with 'embedder_'"):
        _build(tmp_path / "c", item_vectors, variants={"index": exported.onnx_path})
    with pytest.raises(InputError, match="name an existing file"):
        _build(tmp_path / "c", item_vectors, variants={"embedder_fp16": tmp_path / "nope.onnx"})
    assert not (tmp_path / "c").exists()


def _unit(rows: int, dim: int = kit.DIM, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _with(value, row: int, col: int = 0) -> np.ndarray:
    v = _unit(kit.N_ITEMS)
    v[row, col] = value
    return v


@pytest.mark.parametrize("vectors, message", [
    (_unit(kit.N_ITEMS).astype(np.float64), "dtype float64; pass float32"),
    (_unit(kit.N_ITEMS - 1), f"expected \\({kit.N_ITEMS}, {kit.DIM}\\)"),
    (_unit(kit.N_ITEMS + 1), "one row per dataset item"),
    (_unit(kit.N_ITEMS, dim=kit.DIM + 1), f"match the embedder's output dim {kit.DIM}"),
    (_unit(kit.N_ITEMS)[:, 0], "expected \\("),
    (_with(np.nan, 5), "row 5 holds NaN or infinite"),
    (_with(np.inf, 9, 3), "row 9 holds NaN or infinite"),
    (_unit(kit.N_ITEMS) * 2, "row 0 has L2 norm 2; item vectors must be L2-normalized"),
    (12, "got int"),
    ("vectors.npy", "got str"),
])
def test_bad_vectors(tmp_path, vectors, message):
    with pytest.raises(InputError, match=message):
        _build(tmp_path / "b", vectors)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("blocks, message", [
    (lambda: [_unit(40), _unit(40, seed=1)], f"more than {kit.N_ITEMS} rows"),
    (lambda: [_unit(40)], f"supply 40 rows; the dataset has {kit.N_ITEMS} items"),
    (lambda: [_unit(40), [[0.0] * kit.DIM]], "vectors block at row 40 must be a numpy float32 array, got list"),
    (lambda: [_unit(40), _with(np.nan, 2)[:8]], "row 42 holds NaN"),
])
def test_bad_blocks_leave_nothing(tmp_path, blocks, message):
    with pytest.raises(InputError, match=message):
        _build(tmp_path / "b", iter(blocks()))
    # The error came mid-stream, inside the atomic build: neither the bundle nor its temporary folder remains.
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- the steps, one by one


def _tiny_dataset(uris=None):
    from fastattr.world import Dataset

    rng = np.random.default_rng(0)
    return Dataset(images=rng.integers(0, 256, (3, 10, 6, 3), dtype=np.uint8), captions=["a", "b \u00e9", "c"],
                   item_ids=np.array([7, 2, 2**40], np.uint64), attributes=[{"k": 1}, {}, {"k": [1, 2]}], uris=uris)


@pytest.mark.parametrize("uris", [None, ["x/1.png", None, "s3://b/3.jpg"]])
def test_write_items_reads_back_in_row_order(tmp_path, uris):
    data = _tiny_dataset(uris)
    write_items(tmp_path / "items.jsonl", data)
    items = Items.read(tmp_path / "items.jsonl")
    assert items.ids == [7, 2, 2**40] and items.captions == ["a", "b \u00e9", "c"]
    assert items.uris == (uris or [None] * 3) and items.attributes == [{"k": 1}, {}, {"k": [1, 2]}]
    assert [json.loads(line)["item_id"] for line in (tmp_path / "items.jsonl").read_text().splitlines()] == [7, 2, 2**40]


def test_write_thumbnails_shrinks_only_what_is_larger(tmp_path):
    from PIL import Image

    data = _tiny_dataset()
    write_thumbnails(tmp_path / "t.npy", data.images, 5)
    thumbs = np.load(tmp_path / "t.npy")
    expected = Image.fromarray(data.images[1])
    expected.thumbnail((5, 5), Image.Resampling.BICUBIC)
    assert thumbs.shape == (3, 5, 3, 3) and thumbs.dtype == np.uint8
    np.testing.assert_array_equal(thumbs[1], np.asarray(expected))
    write_thumbnails(tmp_path / "same.npy", data.images, 10)  # already small enough: stored as is
    np.testing.assert_array_equal(np.load(tmp_path / "same.npy"), data.images)


def test_check_output_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="is not a bundle"):
        check_output(tmp_path / "mine")
    assert check_output(tmp_path / "mine", overwrite=True) == tmp_path / "mine"
    assert check_output(kit.bundle()) == kit.bundle() and check_output(tmp_path / "new") == tmp_path / "new"


def test_embedder_files_names_every_file_by_role(tmp_path):
    exported = kit.exported()
    files = embedder_files(exported, {"embedder_custom": exported.onnx_path})
    assert {role: name for role, (_, name) in files.items()} == {
        "embedder": "embedder.onnx", "tokenizer": "tokenizer.json", "embedder_fp16": "embedder.fp16.onnx",
        "embedder_int8": "embedder.int8.onnx", "embedder_custom": "embedder.custom.onnx"}
    assert all(source.is_file() for source, _ in files.values())


def test_item_vectors_then_write_index_store_the_embedders_rows(tmp_path, item_vectors):
    from fastattr import bundle_build
    from fastattr import index as index_module

    exported, data = kit.exported(), kit.dataset()
    vectors = bundle_build.item_vectors(exported, data, progress=False)
    assert vectors.provenance == {"source": "embedder"} and vectors.embedded.shape == (kit.N_ITEMS, kit.DIM)
    np.testing.assert_allclose(vectors.embedded, item_vectors, atol=1e-6)  # what the SDK embeds for the items
    ids = np.asarray(data.item_ids, np.uint64)
    write_index(tmp_path / "i.fai", vectors, ids, dim=kit.DIM, progress=False)
    found, scores = index_module.open(str(tmp_path / "i.fai")).search(item_vectors[11], 1)
    assert int(found[0]) == int(ids[11]) and float(scores[0]) > 0.99
    supplied = bundle_build.item_vectors(exported, data, item_vectors)
    assert supplied.embedded is None and supplied.provenance["source"] == "supplied"
    assert [start for start, _ in supplied.blocks] == [0]


def test_bundle_build_and_its_former_name_index_build_are_one_command():
    from fastattr.bundle_build import _run_build
    from fastattr.cli import build_parser

    parser = build_parser()
    argv = ["build", "--embedder", "e", "--dataset", "d", "--out", "o", "--thumbnail-size", "0"]
    new, old = parser.parse_args(["bundle", *argv]), parser.parse_args(["index", *argv])
    assert new.handler is old.handler is _run_build
    same = lambda args: {k: v for k, v in vars(args).items() if k != "command" and not k.endswith("_command")}  # noqa: E731
    assert same(new) == same(old) and new.out == "o" and new.thumbnail_size == 0


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_bundle_files_follow_the_umask(tmp_path, item_vectors, umask):
    import os
    import stat

    previous = os.umask(umask)
    try:
        root = _build(tmp_path / "b", item_vectors)
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [root, *root.iterdir()]}
    assert modes.pop(root.name) == 0o777 & ~umask
    assert modes and set(modes.values()) == {0o666 & ~umask}, {k: oct(v) for k, v in modes.items()}
