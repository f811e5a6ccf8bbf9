"""Tests of export/evaluate.py: per-variant mAP against a teacher set."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared kit lives in tests/
import _export_kit as kit  # noqa: E402

from fastattr.errors import CheckpointError  # noqa: E402

pytest.importorskip("torch")


def _teacher_set(path: Path, splits: list[str]) -> Path:
    """A teacher set whose 'teacher' ranks items exactly as the fp32 embedder does."""
    from fastattr.onnx_embedder import embed_items
    from fastattr.teacher.teacher_set import write_teacher_set

    exported, data = kit.exported(), kit.dataset()
    rows = [5, 17, 30]
    images = np.asarray(data.images)[rows]
    captions = [data.captions[r] for r in rows]
    embed = lambda imgs, caps: embed_items(exported.onnx_path, exported.spec, exported.tokenizer_path,  # noqa: E731
                                           imgs, caps, progress=False)
    scores = embed(images, captions) @ embed(np.asarray(data.images), list(data.captions)).T
    results = [(np.arange(len(data)), s) for s in scores]
    return write_teacher_set(path, captions=captions, splits=splits, query_images=images, results=results,
                             meta={"n_items": len(data)})


def test_fp32_reproduces_its_own_ranking_and_variants_report_their_change(tmp_path):
    from fastattr.export.evaluate import variant_maps

    teacher = _teacher_set(tmp_path / "teacher", ["test"] * 3)
    out = variant_maps(kit.exported().root, kit.root() / "world", teacher)
    assert out["n_test_queries"] == 3 and set(out["variants"]) == {"embedder", "embedder_fp16", "embedder_int8"}
    fp32 = out["variants"]["embedder"]
    assert all(m["mean"] == pytest.approx(1.0) for m in fp32["map"]) and fp32["delta_map"] == [0.0] * len(out["L"])
    for role in ("embedder_fp16", "embedder_int8"):
        deltas = out["variants"][role]["delta_map"]
        assert len(deltas) == len(out["L"]) and all(-1.0 <= d <= 0.0 + 1e-12 for d in deltas)


def test_needs_test_queries(tmp_path):
    from fastattr.export.evaluate import variant_maps

    teacher = _teacher_set(tmp_path / "teacher", ["train"] * 3)
    with pytest.raises(CheckpointError, match="no test queries"):
        variant_maps(kit.exported().root, kit.root() / "world", teacher)
