"""Tampering: every file of a bundle flipped, truncated, removed or swapped for another bundle's is refused
with a message naming it; and no loader of outside files can unpickle."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import _export_kit as kit
from fastattr.bundle import open_bundle
from fastattr.errors import BundleError


@pytest.fixture(scope="module")
def other_bundle(tmp_path_factory) -> Path:
    """A second bundle of another world with the same embedder: same file names, other bytes."""
    from fastattr.bundle_build import build_bundle
    from fastattr.world import make_world

    root = tmp_path_factory.mktemp("other")
    kit.bundle()
    world = make_world(root / "world", n_items=kit.N_ITEMS, seed=11, image_size=kit.IMAGE_SIDE)
    return build_bundle(root / "bundle", embedder=kit.root() / "export", dataset=world, progress=False)


def _files() -> list[str]:
    return sorted(json.loads((kit.bundle() / "manifest.json").read_text())["files"])


@pytest.mark.parametrize("name", _files())
@pytest.mark.parametrize("how", ["flip", "truncate", "remove", "swap"])
def test_every_tampered_file_is_refused_by_name(name: str, how: str, tmp_path: Path, other_bundle: Path) -> None:
    root = kit.copy_bundle(tmp_path / "b")
    target = root / name
    if how == "flip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x40
        target.write_bytes(bytes(data))
    elif how == "truncate":
        target.write_bytes(target.read_bytes()[:-1])
    elif how == "remove":
        target.unlink()
    else:
        if (other_bundle / name).read_bytes() == target.read_bytes():
            pytest.skip(f"{name} is the same in both bundles (the shared embedder)")
        shutil.copyfile(other_bundle / name, target)
    with pytest.raises(BundleError, match=re.escape(name)):
        open_bundle(root)   # the SDK's default: verify="full"


def test_no_loader_can_unpickle() -> None:
    """Every np.load says allow_pickle=False; no pickle, no torch.load, anywhere in the package."""
    package = Path(__file__).resolve().parents[1]
    sources = [p for d in ("python/fastattr", "export") for p in (package / d).rglob("*.py")]
    assert len(sources) > 40
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for line_no, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not re.search(r"\bimport pickle\b|\bpickle\.loads?\(|\bdill\b|\bjoblib\.load\(", code), (path, line_no)
            assert "torch.load(" not in code or "weights_only=True" in code, (path, line_no)
            assert "allow_pickle=True" not in code, (path, line_no)
        for call in re.finditer(r"np\.load\(([^()]*(?:\([^()]*\))?[^()]*)\)", text):
            assert "allow_pickle=False" in call.group(1), (path, call.group(0))
