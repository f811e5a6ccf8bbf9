"""Tests of export/parity.py: the bars are measured on every export and a failing graph writes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared kit lives in tests/
import _export_kit as kit  # noqa: E402

from fastattr.export import ParityError, check_parity, export_embedder, make_parity_inputs  # noqa: E402
from fastattr.export.parity import compare  # noqa: E402
from fastattr.preprocess import Tokenizer  # noqa: E402

pytest.importorskip("torch")


def test_recorded_parity_meets_the_bars():
    parity = kit.exported().info["parity"]
    assert parity["embedder"]["n"] >= 64
    assert parity["embedder"]["max_abs"] <= 1e-4 and parity["embedder"]["min_cosine"] >= 0.9999
    assert parity["embedder_fp16"]["min_cosine"] >= 0.999  # measured on CPU; recorded for CUDA users
    assert parity["embedder_int8"]["min_cosine"] >= 0.98


def test_inputs_cover_padding_and_lengths():
    pre = kit.exported().spec
    inputs = make_parity_inputs(pre, Tokenizer.from_file(kit.tokenizer_file(), max_length=pre.max_length), n=64)
    assert inputs.n == 64
    lengths = np.concatenate([b["attention_mask"].sum(1) for b in inputs.batches])
    assert lengths.min() == 1 and lengths.max() > 4 and len(set(lengths.tolist())) > 5


def test_a_graph_that_disagrees_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    import shutil

    import fastattr.export.embedder as embedder_module

    graph = kit.exported().onnx_path

    def stale_export(module, path, **kwargs):  # a graph of other weights: silently wrong
        shutil.copyfile(graph, path)
        return path

    monkeypatch.setattr(embedder_module, "export_onnx", stale_export)
    with pytest.raises(ParityError, match="does not reproduce the torch embedder on 64 inputs"):
        export_embedder(kit.make_standin(seed=1), kit.spec_dict(), tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_too_few_inputs(tmp_path):
    pre = kit.exported().spec
    few = make_parity_inputs(pre, Tokenizer.from_file(kit.tokenizer_file(), max_length=pre.max_length), n=8)
    with pytest.raises(ParityError, match="at least 64 inputs"):
        check_parity(kit.standin(), kit.exported().onnx_path, few)


def test_compare():
    a = np.eye(3, dtype=np.float32)
    parity = compare(a, a)
    assert parity.max_abs == 0 and parity.min_cosine == pytest.approx(1.0)
    flipped = compare(a, -a)
    assert flipped.min_cosine == pytest.approx(-1.0) and not flipped.passes(1e-4, 0.9999)
