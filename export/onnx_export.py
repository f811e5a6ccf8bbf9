"""torch → ONNX: the whole embedder as one graph, plus its fp16 and int8 variants.

The graph takes ``pixel_values`` float32 (batch, 3, H, W) with H×W fixed, ``input_ids`` and
``attention_mask`` int64 (batch, seq) with batch and seq dynamic, and returns ``vectors``
float32 (batch, dim), L2-normalized. The output is deliberately not called "embedding": the
dynamo exporter clashes with a module of that name.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

from fastattr._atomic import atomic_open
from fastattr._deps import require
from fastattr.errors import CheckpointError

__all__ = ["INPUT_NAMES", "INT8_OP_TYPES", "OUTPUT_NAME", "export_onnx", "to_fp16", "to_int8"]

INPUT_NAMES = ("pixel_values", "input_ids", "attention_mask")
OUTPUT_NAME = "vectors"


def export_onnx(
    module: Any,
    path: str | os.PathLike[str],
    *,
    image_size: tuple[int, int],
    vocab_size: int = 100,
    example_seq_len: int = 8,
    opset: int | None = None,
    quiet: bool = True,
) -> Path:
    """Export an embedder ``module(pixel_values, input_ids, attention_mask) -> (B, D)`` to one ONNX file.

    Args:
        module: the torch module (put in eval mode here).
        path: the ``.onnx`` file to write (atomically, weights inside the file).
        image_size: (H, W) of ``pixel_values``; fixed in the graph.
        vocab_size: upper bound for the example token ids used to trace.
        example_seq_len: length of the example sequences; batch and seq stay dynamic anyway.
        opset: ONNX opset, or None for the exporter's default.
        quiet: hide the exporter's progress prints.

    Raises:
        CheckpointError: the exporter failed or the graph lacks the expected inputs/outputs.

    Example:
        >>> export_onnx(module, "embedder.onnx", image_size=(32, 32))  # doctest: +SKIP
    """
    torch = require("torch", feature="fastattr.export")
    onnx = require("onnx", feature="fastattr.export")
    module = module.eval()
    height, width = image_size
    generator = torch.Generator().manual_seed(0)
    # Batch 2 and seq > 1: the exporter specializes dimensions whose example size is 0 or 1.
    pixel_values = torch.randn(2, 3, height, width, generator=generator)
    input_ids = torch.randint(0, max(int(vocab_size), 2), (2, example_seq_len), generator=generator)
    attention_mask = torch.ones(2, example_seq_len, dtype=torch.int64)
    attention_mask[1, example_seq_len // 2:] = 0
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    dynamic_shapes = {"pixel_values": {0: batch}, "input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    sink = io.StringIO()
    redirect = contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext()
    try:
        with redirect, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (pixel_values, input_ids, attention_mask),
                dynamo=True,
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                optimize=True,
            )
    except Exception as exc:  # the exporter raises many unrelated types; report them as one
        raise CheckpointError(f"ONNX export of the embedder failed: {type(exc).__name__}: {exc}") from exc
    model = program.model_proto
    names_in = [i.name for i in model.graph.input]
    names_out = [o.name for o in model.graph.output]
    if tuple(names_in) != INPUT_NAMES or names_out != [OUTPUT_NAME]:
        raise CheckpointError(f"exported graph has inputs {names_in} and outputs {names_out}; expected {list(INPUT_NAMES)} -> {OUTPUT_NAME!r}")
    onnx.checker.check_model(model)
    target = Path(path)
    with atomic_open(target, "wb") as handle:
        handle.write(model.SerializeToString())  # single file: the weights stay inside (< 2 GB)
    return target


def to_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write an fp16 copy of an fp32 ONNX embedder (inputs and output stay fp32), for CUDA.

    Example:
        >>> to_fp16("embedder.onnx", "embedder.fp16.onnx")  # doctest: +SKIP
    """
    onnx = require("onnx", feature="fastattr.export")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    target = Path(dst)
    with atomic_open(target, "wb") as handle:
        handle.write(model.SerializeToString())
    return target


# What the int8 variant quantizes, and why (docs/quantization.md has the measurements):
# - MatMul weights only (onnxruntime rewrites Gemm as MatMul + Add first), per output channel. A pretrained text encoder (MiniLM) has a few
#   output channels with weights 20-40x larger than the rest in its FFN output layers; one scale
#   per tensor leaves the other channels a handful of int8 levels (min cosine 0.88 on the demo
#   student), one scale per channel does not (0.985).
# - Embedding tables (Gather) stay float: quantizing them saves size, not time, and their
#   outlier rows (position embeddings) cost accuracy.
# - Activations are quantized per batch at run time (dynamic). A static, calibrated range was
#   measured less accurate and slower here: the encoders' activation range varies from input to
#   input (outlier tokens after the FFN's GELU), which one fixed range cannot follow.
INT8_OP_TYPES = ("MatMul",)


def to_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write an int8 copy for CPU: MatMul weights int8 per output channel, activations quantized per batch.

    Linear layers (MatMul, and Gemm rewritten as MatMul + Add) are quantized; products of two
    activations (attention) and embedding tables (Gather) stay float.

    Example:
        >>> to_int8("embedder.onnx", "embedder.int8.onnx")  # doctest: +SKIP
    """
    import logging
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = Path(dst)
    # quantize_dynamic writes by path; write beside the target, then move it in atomically.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_path = Path(tmp) / "int8.onnx"
        logger = logging.getLogger()
        level = logger.level
        logger.setLevel(logging.ERROR)  # silence the "consider pre-processing" advice
        try:
            quantize_dynamic(str(src), str(tmp_path), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=list(INT8_OP_TYPES),
                             extra_options={"MatMulConstBOnly": True})
        finally:
            logger.setLevel(level)
        with atomic_open(target, "wb") as handle:
            handle.write(tmp_path.read_bytes())
    return target
