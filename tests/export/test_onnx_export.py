"""Tests of export/onnx_export.py and export/embedder.py: one graph, dynamic axes, single file, real student."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared kit lives in tests/
import _export_kit as kit  # noqa: E402

from fastattr.errors import CheckpointError  # noqa: E402
from fastattr.export import load_export  # noqa: E402

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")


def test_graph_signature_and_single_file():
    exported = kit.exported()
    assert sorted(p.name for p in exported.root.iterdir()) == [
        "embedder.fp16.onnx", "embedder.int8.onnx", "embedder.onnx", "export.json", "tokenizer.json"]
    model = onnx.load(str(exported.onnx_path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert list(dims) == ["pixel_values", "input_ids", "attention_mask"]
    assert dims["pixel_values"][1:] == [3, kit.IMAGE_SIDE, kit.IMAGE_SIDE] and isinstance(dims["pixel_values"][0], str)
    assert all(isinstance(d, str) for d in dims["input_ids"] + dims["attention_mask"])  # batch, seq dynamic
    assert [o.name for o in model.graph.output] == ["vectors"]


@pytest.mark.parametrize("batch, seq", [(1, 3), (5, kit.MAX_LENGTH), (2, 1)])
def test_dynamic_batch_and_sequence(batch, seq):
    import onnxruntime as ort

    session = ort.InferenceSession(str(kit.exported().onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(batch * 100 + seq)
    feed = {"pixel_values": rng.standard_normal((batch, 3, kit.IMAGE_SIDE, kit.IMAGE_SIDE)).astype(np.float32),
            "input_ids": rng.integers(0, 20, (batch, seq)).astype(np.int64),
            "attention_mask": np.ones((batch, seq), np.int64)}
    out = session.run(None, feed)[0]
    with torch.no_grad():
        ref = kit.standin()(*(torch.from_numpy(v) for v in feed.values())).numpy()
    assert out.shape == (batch, kit.DIM)
    assert np.abs(out - ref).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_export_failure_is_a_checkpoint_error(tmp_path):
    from fastattr.export import export_onnx

    class Broken(torch.nn.Module):
        def forward(self, pixel_values, input_ids, attention_mask):
            raise RuntimeError("cannot trace me")

    with pytest.raises(CheckpointError, match="ONNX export of the embedder failed"):
        export_onnx(Broken(), tmp_path / "x.onnx", image_size=(8, 8))
    assert not (tmp_path / "x.onnx").exists()


def test_export_records_the_students_preprocessing_unchanged(tmp_path):
    import json

    from fastattr.student.spec import EmbedderSpec

    spec = EmbedderSpec(**kit.spec_dict())
    exported = kit.exported()  # exported from kit.spec_dict(), the student.json form of the spec
    assert exported.spec == spec.preprocess and exported.dim == spec.dim == kit.DIM
    assert json.loads((exported.root / "export.json").read_text())["preprocessing"] == spec.preprocess.to_dict()
    assert (exported.root / "tokenizer.json").read_bytes() == kit.tokenizer_file().read_bytes()
    # Only the student's own layout is read: an incomplete or foreign one is refused, nothing is written.
    from fastattr.export import export_embedder

    with pytest.raises(CheckpointError, match="missing keys"):
        export_embedder(kit.standin(), {"size": [4, 4]}, tmp_path / "a")
    with pytest.raises(CheckpointError, match="unknown keys \\['image_size'\\]"):
        export_embedder(kit.standin(), {**kit.spec_dict(), "image_size": 8}, tmp_path / "b")
    with pytest.raises(CheckpointError, match="must be a fastattr.student.EmbedderSpec"):
        export_embedder(kit.standin(), [("size", [4, 4])], tmp_path / "c")
    assert not any(tmp_path.iterdir())


def test_load_export_errors(tmp_path):
    import json
    import shutil

    with pytest.raises(CheckpointError, match="no export.json"):
        load_export(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(kit.exported().root, copy)
    (copy / "embedder.int8.onnx").unlink()
    with pytest.raises(CheckpointError, match="missing embedder.int8.onnx"):
        load_export(copy)
    (copy / "export.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(CheckpointError, match="is not 'fastattr-embedder'"):
        load_export(copy)
