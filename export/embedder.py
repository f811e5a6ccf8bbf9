"""An exported-embedder folder: the ONNX graph(s), tokenizer.json and export.json with parity figures.

Layout (format "fastattr-embedder", version 1)::

    embedder.onnx        fp32, parity-checked against torch (always)
    embedder.fp16.onnx   optional, for CUDA
    embedder.int8.onnx   optional, for CPU: MatMul weights int8 per channel, activations
                         quantized per batch (docs/quantization.md)
    tokenizer.json
    export.json          dim, preprocessing, files, parity per file, source

Nothing is written unless the fp32 graph passes the parity bars: the folder is built under a
temporary name and renamed at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fastattr._atomic import atomic_dir, write_json
from fastattr.errors import CheckpointError
from fastattr.preprocess import PreprocessSpec, Tokenizer
from fastattr.student.spec import EmbedderSpec

from .onnx_export import export_onnx, to_fp16, to_int8
from .parity import MIN_INPUTS, check_parity, make_parity_inputs, measure_parity

__all__ = ["FORMAT", "ExportedEmbedder", "export_embedder", "export_student", "load_export"]

FORMAT = "fastattr-embedder"
VERSION = 1
# Variants must keep at least this cosine to the torch embedder on every parity input, else they
# are dropped with a warning (the int8 figures behind 0.98: docs/quantization.md).
VARIANT_MIN_COSINE = {"embedder_fp16": 0.999, "embedder_int8": 0.98}
VARIANT_FILES = {"embedder_fp16": "embedder.fp16.onnx", "embedder_int8": "embedder.int8.onnx"}


def _embedder_spec(spec: Any) -> EmbedderSpec:
    """The student's EmbedderSpec, given as itself or as its JSON form (student.json's "spec")."""
    if isinstance(spec, EmbedderSpec):
        return spec
    if isinstance(spec, Mapping):
        return EmbedderSpec.from_dict(spec)
    raise CheckpointError(f"the embedder spec must be a fastattr.student.EmbedderSpec or its to_dict() form, "
                          f"got {type(spec).__name__}")


@dataclasses.dataclass(frozen=True)
class ExportedEmbedder:
    """An exported-embedder folder, read back.

    Example:
        >>> exported = load_export("runs/export")  # doctest: +SKIP
        >>> exported.onnx_path.name  # doctest: +SKIP
        'embedder.onnx'
    """

    root: Path
    info: dict[str, Any]
    spec: PreprocessSpec
    dim: int

    @property
    def onnx_path(self) -> Path:
        return self.root / self.info["files"]["embedder"]

    @property
    def tokenizer_path(self) -> Path:
        return self.root / "tokenizer.json"

    def variants(self) -> dict[str, Path]:
        """Optional variant files by role ("embedder_fp16", "embedder_int8")."""
        return {role: self.root / name for role, name in self.info["files"].items() if role != "embedder"}


def load_export(path: str | os.PathLike[str]) -> ExportedEmbedder:
    """Read an exported-embedder folder written by :func:`export_embedder`.

    Raises:
        CheckpointError: the folder or export.json is missing or of another format.
    """
    root = Path(path)
    meta = root / "export.json"
    if not meta.is_file():
        raise CheckpointError(f"{root} has no export.json; create it with `fastattr export STUDENT --out {root}`")
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{meta} is not valid JSON ({exc})") from exc
    if info.get("format") != FORMAT or int(info.get("version", -1)) != VERSION:
        raise CheckpointError(f"{meta}: format {info.get('format')!r} v{info.get('version')} is not {FORMAT!r} v{VERSION}")
    for name in list(info["files"].values()) + ["tokenizer.json"]:
        if not (root / name).is_file():
            raise CheckpointError(f"{root} is missing {name}; re-run `fastattr export`")
    return ExportedEmbedder(root, info, PreprocessSpec.from_dict(info["preprocessing"]), int(info["dim"]))


def export_embedder(
    module: Any,
    spec: Any,
    out_dir: str | os.PathLike[str],
    *,
    fp16: bool = False,
    int8: bool = False,
    n_parity: int = MIN_INPUTS,
    images: np.ndarray | None = None,
    captions: Sequence[str] | None = None,
    source: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> ExportedEmbedder:
    """Export a torch embedder and its tokenizer into ``out_dir``, parity-checked; atomic.

    An existing ``out_dir`` is replaced only if it is an export folder (or ``overwrite``).

    Args:
        module: ``forward(pixel_values, input_ids, attention_mask) -> (B, D)`` L2-normalized.
        spec: the student's ``EmbedderSpec``, or its ``to_dict()`` form; its ``preprocess``
            goes into export.json unchanged.
        out_dir: folder to create (replaced only when the new one is complete).
        fp16, int8: also write these variants, each with its measured parity.
        n_parity: number of parity inputs (at least 64).
        images, captions: real data for half of the parity inputs (optional).
        source: provenance recorded in export.json (e.g. the student checkpoint path).

    Raises:
        ParityError: the fp32 graph misses the bars; nothing is written.

    Example:
        >>> export_embedder(module, spec, "runs/export", int8=True)  # doctest: +SKIP
    """
    embedder_spec = _embedder_spec(spec)
    pre, tokenizer_src, dim = embedder_spec.preprocess, Path(embedder_spec.tokenizer), embedder_spec.dim
    if not tokenizer_src.is_file():
        raise CheckpointError(f"the embedder's tokenizer {str(tokenizer_src)!r} does not exist")
    tokenizer = Tokenizer.from_file(tokenizer_src, max_length=pre.max_length)
    # Half the inputs random (covers odd lengths and padding), half real when data is given.
    n_random = n_parity if images is None else n_parity // 2
    random_inputs = make_parity_inputs(pre, tokenizer, n=n_random, seed=0)
    batches = list(random_inputs.batches)
    if images is not None:
        real = make_parity_inputs(pre, tokenizer, n=n_parity - n_random, seed=1, images=images, captions=captions)
        batches += real.batches
    inputs = type(random_inputs)(batches)
    files = {"embedder": "embedder.onnx"}
    with atomic_dir(out_dir, marker="export.json", what="export folder", overwrite=overwrite) as tmp:
        export_onnx(module, tmp / "embedder.onnx", image_size=pre.size, vocab_size=tokenizer._tok.get_vocab_size())
        parity = {"embedder": check_parity(module, tmp / "embedder.onnx", inputs).to_dict()}
        makers = {"embedder_fp16": to_fp16 if fp16 else None, "embedder_int8": to_int8 if int8 else None}
        for role, maker in makers.items():
            if maker is None:
                continue
            path = maker(tmp / "embedder.onnx", tmp / VARIANT_FILES[role])
            measured = measure_parity(module, path, inputs)
            if measured.min_cosine < VARIANT_MIN_COSINE[role]:
                warnings.warn(f"{VARIANT_FILES[role]} dropped: min cosine {measured.min_cosine:.5f} < {VARIANT_MIN_COSINE[role]}")
                path.unlink()
                continue
            files[role] = VARIANT_FILES[role]
            parity[role] = measured.to_dict()
        shutil.copyfile(tokenizer_src, tmp / "tokenizer.json")
        write_json(tmp / "export.json", {
            "format": FORMAT,
            "version": VERSION,
            "dim": dim,
            "preprocessing": pre.to_dict(),
            "files": files,
            "parity": parity,
            "source": dict(source or {}),
        })
    return load_export(out_dir)


def export_student(
    student_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dataset: Any = None,
    **kwargs: Any,
) -> ExportedEmbedder:
    """Load a student checkpoint with ``fastattr.student.load_embedder`` and export it.

    Example:
        >>> export_student("runs/student", "runs/export", dataset="runs/world", int8=True)  # doctest: +SKIP
    """
    from fastattr.student import load_embedder

    module, spec = load_embedder(student_dir)
    images = captions = None
    if dataset is not None:
        from fastattr.data import open_dataset

        data = open_dataset(dataset)
        take = min(len(data), 256)
        images, captions = np.asarray(data.images[:take]), list(data.captions[:take])
    source = {"student": str(Path(student_dir).resolve()), **kwargs.pop("source", {})}
    return export_embedder(module, spec, out_dir, images=images, captions=captions, source=source, **kwargs)
