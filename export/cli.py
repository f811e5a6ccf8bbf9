"""`fastattr export`: a student checkpoint → a parity-checked ONNX embedder folder."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..data.layouts import add_dataset_arguments, dataset_from_args

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from .embedder import export_student

    exported = export_student(
        args.student, args.out, dataset=dataset_from_args(args), fp16=args.fp16, int8=args.int8, n_parity=args.parity_n,
        overwrite=args.overwrite
    )
    print(f"wrote {exported.root} (dim {exported.dim})")
    for role, figures in exported.info["parity"].items():
        print(f"  {role:14s} parity on {figures['n']} inputs: max|Δ| {figures['max_abs']:.2e}, "
              f"min cosine {figures['min_cosine']:.6f}")
    if args.json:
        print(json.dumps(exported.info, indent=2))
    return 0


def register(subparsers: Any) -> None:
    """Add `fastattr export` to the CLI."""
    parser = subparsers.add_parser(
        "export", help="export a student embedder to ONNX (parity-checked)",
        description="Export the whole student embedder (image + text encoders + head) into one ONNX graph, "
        "check it against torch on >= 64 inputs, and write an embedder folder for `fastattr bundle build`.",
    )
    parser.add_argument("student", help="student checkpoint folder (student.json, head.safetensors, ...)")
    parser.add_argument("--out", required=True, help="embedder folder to write")
    add_dataset_arguments(parser, required=False)
    parser.add_argument("--fp16", action="store_true", help="also write embedder.fp16.onnx (for CUDA)")
    parser.add_argument("--int8", action="store_true",
                        help="also write embedder.int8.onnx (CPU: int8 MatMul weights per channel, activations "
                        "quantized per batch; dropped with a warning below min cosine 0.98)")
    parser.add_argument("--parity-n", type=int, default=64, help="number of parity inputs (>= 64)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace whatever is at --out (by default only an existing export folder is replaced)")
    parser.add_argument("--json", action="store_true", help="print export.json")
    parser.set_defaults(handler=_run)
