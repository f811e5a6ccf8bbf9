"""Tests of the int8 variant (export/onnx_export.py to_int8): what it quantizes, why, and its drop path.

docs/quantization.md has the measurements on the trained demo student these tests stand in for.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared kit lives in tests/
import _export_kit as kit  # noqa: E402

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from fastattr.export import export_embedder, load_export, to_int8  # noqa: E402


def _initializers(model):
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


def test_int8_graph_quantizes_matmul_weights_per_channel_only():
    exported = kit.exported()
    fp32 = onnx.load(str(exported.onnx_path))
    int8 = onnx.load(str(exported.variants()["embedder_int8"]))
    inits = _initializers(int8)
    ops = [n.op_type for n in int8.graph.node]
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops  # activations quantized per batch
    # Every quantized weight has one zero point (and scale) per output channel.
    for node in (n for n in int8.graph.node if n.op_type == "MatMulInteger"):
        weight, zero_point = inits[node.input[1]], inits[node.input[3]]
        assert weight.dtype == np.int8 and zero_point.shape == (weight.shape[1],) and weight.shape[1] > 1
    # Embedding tables stay float: quantized per tensor they cost accuracy and save no time.
    gathers = [n for n in int8.graph.node if n.op_type == "Gather" and n.input[0] in inits]
    assert gathers and all(inits[n.input[0]].dtype == np.float32 for n in gathers)
    assert "DequantizeLinear" not in ops
    # Products of two activations (attention scores, attention x values) stay float, as in fp32.
    fp32_inits = {i.name for i in fp32.graph.initializer}
    float_matmuls = [n for n in int8.graph.node if n.op_type == "MatMul"]
    assert float_matmuls and all(n.input[1] not in inits for n in float_matmuls)
    # onnxruntime rewrites Gemm (the head's Linear layers) as MatMul + Add first: those are quantized too.
    weight_matmuls = [n for n in fp32.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in fp32_inits]
    assert ops.count("MatMulInteger") == len(weight_matmuls)


def _one_matmul(path: Path, weight: np.ndarray) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "one_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def test_one_outlier_output_channel_does_not_flatten_the_others(tmp_path):
    """The cause of issue 22: MiniLM's FFN output weights have a few channels 20-40x the rest.

    One scale per tensor (the former recipe) leaves the ordinary channels a few int8 levels;
    to_int8's one scale per output channel keeps them.
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.05, (64, 32)).astype(np.float32)
    weight[:, 0] *= 40  # one outlier output channel
    x = rng.normal(0, 1, (16, 64)).astype(np.float32)
    src = _one_matmul(tmp_path / "one.onnx", weight)
    reference = (x @ weight)[:, 1:]

    def run(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"x": x})[0][:, 1:]

    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(str(src), str(tmp_path / "per_tensor.onnx"), weight_type=QuantType.QInt8)
    assert _min_cosine(reference, run(tmp_path / "per_tensor.onnx")) < 0.98
    assert _min_cosine(reference, run(to_int8(src, tmp_path / "int8.onnx"))) > 0.999


def test_a_variant_below_its_floor_is_dropped_with_a_warning(tmp_path, monkeypatch):
    import json

    import fastattr.export.embedder as embedder_module

    monkeypatch.setitem(embedder_module.VARIANT_MIN_COSINE, "embedder_int8", 1.01)  # unreachable
    data = kit.dataset()
    with pytest.warns(Warning, match=r"embedder\.int8\.onnx dropped: min cosine 0\.9\d+ < 1\.01"):
        exported = export_embedder(kit.standin(), kit.spec_dict(), tmp_path / "export", int8=True,
                                   images=np.asarray(data.images), captions=list(data.captions))
    assert not (exported.root / "embedder.int8.onnx").exists()
    info = json.loads((exported.root / "export.json").read_text())
    assert set(info["files"]) == {"embedder"} and set(info["parity"]) == {"embedder"}
    assert load_export(exported.root).variants() == {}
