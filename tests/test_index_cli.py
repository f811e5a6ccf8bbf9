"""Tests of fastattr.index_cli.build_bundle: bundles from supplied (precomputed) vectors, extra variants, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import _export_kit as kit
import fastattr
from fastattr.errors import InputError
from fastattr.index_cli import build_bundle


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
