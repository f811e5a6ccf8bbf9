"""Tests of fastattr.bundle (and the atomic bundle build): versions, checksums, path safety."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import _export_kit as kit
from fastattr.bundle import Items, open_bundle, safe_path
from fastattr.errors import BundleError, InputError


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    return kit.copy_bundle(tmp_path / "bundle")


def _edit_manifest(root: Path, **changes):
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))
    return manifest


def test_opens_and_describes_itself():
    bundle = open_bundle(kit.bundle())
    manifest = bundle.manifest
    assert manifest["format"] == "fastattr-bundle" and manifest["version"] == "1.0"
    assert bundle.n_items == kit.N_ITEMS and bundle.dim == kit.DIM
    assert set(manifest["roles"]) >= {"embedder", "tokenizer", "index", "items", "thumbnails"}
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    assert manifest["export"]["parity"]["embedder"]["n"] >= 64
    assert manifest["evaluation"] == {"note": "stand-in"}
    assert manifest["preprocessing"]["text"]["max_length"] == kit.MAX_LENGTH
    items = bundle.items()
    assert len(items) == kit.N_ITEMS and items.captions[3] == kit.dataset().captions[3]


def test_altered_file_is_refused_in_full_mode_only_when_same_size(bundle_copy):
    data = bytearray((bundle_copy / "items.jsonl").read_bytes())
    data[10] ^= 1
    (bundle_copy / "items.jsonl").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256"):
        open_bundle(bundle_copy)
    open_bundle(bundle_copy, verify="sizes")  # same size: the fast mode cannot see it, by design


def test_truncated_file_is_refused_even_in_sizes_mode(bundle_copy):
    with open(bundle_copy / "index.fai", "r+b") as handle:
        handle.truncate(os.path.getsize(bundle_copy / "index.fai") - 8)
    with pytest.raises(BundleError, match="bytes"):
        open_bundle(bundle_copy, verify="sizes")


def test_missing_file(bundle_copy):
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="missing 'tokenizer.json'"):
        open_bundle(bundle_copy)


def test_versions(bundle_copy):
    _edit_manifest(bundle_copy, version="1.7")
    assert open_bundle(bundle_copy).version == (1, 7)  # newer minor: readable
    _edit_manifest(bundle_copy, version="2.0")
    with pytest.raises(BundleError, match="version 2.0 is not supported"):
        open_bundle(bundle_copy)
    _edit_manifest(bundle_copy, version="one")
    with pytest.raises(BundleError, match="MAJOR.MINOR"):
        open_bundle(bundle_copy)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/hostname", "a/../../b", "", "a\\b"])
def test_paths_that_leave_the_bundle(bundle_copy, name):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": "0" * 64, "bytes": 1}
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="leaves the bundle"):
        open_bundle(bundle_copy)


def test_symlink_out_of_the_bundle(bundle_copy, tmp_path):
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes((bundle_copy / "items.jsonl").read_bytes())
    (bundle_copy / "items.jsonl").unlink()
    (bundle_copy / "items.jsonl").symlink_to(outside)
    with pytest.raises(BundleError, match="leaves the bundle"):
        open_bundle(bundle_copy)
    assert safe_path(bundle_copy, "index.fai") == bundle_copy / "index.fai"


def test_manifest_problems(bundle_copy, tmp_path):
    with pytest.raises(BundleError, match="no bundle folder"):
        open_bundle(tmp_path / "nope")
    _edit_manifest(bundle_copy, format="something-else")
    with pytest.raises(BundleError, match="format is 'something-else'"):
        open_bundle(bundle_copy)
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(bundle_copy)
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="has no manifest.json"):
        open_bundle(bundle_copy)
    with pytest.raises(InputError, match="verify"):
        open_bundle(kit.bundle(), verify="none")


def test_manifest_field_and_role_problems(bundle_copy):
    manifest = _edit_manifest(bundle_copy)
    del manifest["roles"]["index"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="names no 'index' file"):
        open_bundle(bundle_copy)
    del manifest["dim"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="lacks the 'dim' field"):
        open_bundle(bundle_copy)


def test_items_problems(tmp_path, bundle_copy):
    bad = tmp_path / "items.jsonl"
    bad.write_text('{"item_id": 1, "caption": "a"}\n{"caption": "no id"}\n')
    with pytest.raises(BundleError, match=":2: malformed"):
        Items.read(bad)
    items = Items.read(bundle_copy / "items.jsonl")
    with pytest.raises(InputError, match="not in this bundle"):
        items.row(10**9)
    manifest = _edit_manifest(bundle_copy, n_items=kit.N_ITEMS + 1)
    assert manifest["n_items"] == kit.N_ITEMS + 1
    with pytest.raises(BundleError, match="the manifest says"):
        open_bundle(bundle_copy).items()


def test_interrupted_build_leaves_no_bundle(tmp_path, monkeypatch):
    import fastattr.bundle_build as bundle_build

    kit.bundle()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_build, "write_manifest", boom)
    with pytest.raises(KeyboardInterrupt):
        bundle_build.build_bundle(tmp_path / "b", embedder=kit.root() / "export", dataset=kit.dataset(), progress=False)
    assert not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]  # the temporary folder is gone too


@pytest.mark.parametrize("change", [
    {"dim": "abc"}, {"dim": None}, {"dim": 10**9}, {"n_items": -1}, {"n_items": True},
    {"preprocessing": "x"}, {"preprocessing": {"image": {"size": [100000, 100000], "resize": "bilinear",
                                                         "mean": [0.5] * 3, "std": [0.5] * 3},
                                               "text": {"max_length": 16}}},
    {"roles": "x"}, {"roles": {"embedder": 3}},
])
def test_malformed_manifest_fields_are_bundle_errors(bundle_copy, change) -> None:
    _edit_manifest(bundle_copy, **change)
    with pytest.raises(BundleError):
        open_bundle(bundle_copy, verify="sizes")


@pytest.mark.parametrize("entry", ["x", None, {"sha256": "0", "bytes": "abc"}, {"sha256": "0"}])
def test_malformed_file_entries_are_bundle_errors(bundle_copy, entry) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    files = dict(manifest["files"])
    files[next(iter(files))] = entry
    _edit_manifest(bundle_copy, files=files)
    with pytest.raises(BundleError, match="must be"):
        open_bundle(bundle_copy, verify="sizes")
