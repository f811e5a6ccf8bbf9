"""The checkpoint: load_embedder gives the module training used, with the spec; broken folders are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from fastattr.errors import CheckpointError
from fastattr.student import load_embedder
from fastattr.student.embedder import load_student
from fastattr.student.features import image_features, text_features
from fastattr.student.head import join_features
from fastattr.student.spec import preprocess_images, tokenize


def test_round_trip_equals_training_path(student_dir, world):
    module, spec = load_embedder(student_dir)
    assert json.loads(json.dumps(spec.to_dict())) == spec.to_dict()
    assert spec.size == (16, 16) and spec.dim == 32
    images, captions = np.asarray(world.images[:6]), world.captions[:6]
    pixels = torch.from_numpy(preprocess_images(images, spec))
    ids, mask = tokenize(captions, spec)
    with torch.no_grad():
        out = module(pixels, torch.from_numpy(ids), torch.from_numpy(mask))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(6))
    # Training embeds cached features with the head; the exported module must agree with that path.
    student = load_student(student_dir)
    feats = join_features(torch.from_numpy(image_features(student.image_encoder, images, progress=False)),
                          torch.from_numpy(text_features(student.text_encoder, captions, progress=False)))
    with torch.no_grad():
        torch.testing.assert_close(out, student.head(feats), rtol=1e-4, atol=1e-5)
    info = json.loads((student_dir / "student.json").read_text())
    assert info["training"]["steps"] == 30 and info["spec"]["tokenizer"] == "tokenizer.json"
    with torch.no_grad():
        assert float(student.head.alpha) == pytest.approx(info["alpha"])


def test_module_exports_to_onnx(student_dir, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    module, spec = load_embedder(student_dir)
    pixels = torch.randn(2, 3, *spec.size)
    ids, mask = tokenize(["a red square", "a blue circle at the top left"], spec)
    args = (pixels, torch.from_numpy(ids), torch.from_numpy(mask))
    path = tmp_path / "e.onnx"
    torch.onnx.export(module, args, str(path), input_names=["pixel_values", "input_ids", "attention_mask"],
                      output_names=["vector"], dynamo=True, external_data=False,
                      dynamic_shapes={"pixel_values": {0: "b"}, "input_ids": {0: "b"}, "attention_mask": {0: "b"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"pixel_values": pixels.numpy(), "input_ids": ids, "attention_mask": mask})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, module(*args).numpy(), rtol=1e-4, atol=1e-5)


def _copy(student_dir, tmp_path):
    dst = tmp_path / "s"
    shutil.copytree(student_dir, dst)
    return dst


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="student.json is missing"):
        load_embedder(tmp_path)


def test_wrong_version(student_dir, tmp_path):
    folder = _copy(student_dir, tmp_path)
    info = json.loads((folder / "student.json").read_text())
    info["version"] = 99
    (folder / "student.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="version 99"):
        load_embedder(folder)


def test_missing_head(student_dir, tmp_path):
    folder = _copy(student_dir, tmp_path)
    (folder / "head.safetensors").unlink()
    with pytest.raises(CheckpointError, match="head.safetensors is missing"):
        load_embedder(folder)


def test_head_does_not_fit(student_dir, tmp_path):
    folder = _copy(student_dir, tmp_path)
    info = json.loads((folder / "student.json").read_text())
    info["head"]["hidden"] = 7
    (folder / "student.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="does not hold this head's weights"):
        load_embedder(folder)


def test_encoder_dims_disagree(student_dir, tmp_path):
    folder = _copy(student_dir, tmp_path)
    info = json.loads((folder / "student.json").read_text())
    info["head"]["in_dim"] += 1
    (folder / "student.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="but the head expects"):
        load_embedder(folder)


def test_corrupt_json(student_dir, tmp_path):
    folder = _copy(student_dir, tmp_path)
    (folder / "student.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_embedder(folder)
