"""torch -> ONNX conversion of the student embedder, with a parity check (installed as fastattr.export).

Example:
    >>> from fastattr.export import export_student  # doctest: +SKIP
    >>> export_student("runs/student", "runs/export", int8=True)  # doctest: +SKIP
"""

from __future__ import annotations

from .embedder import ExportedEmbedder, export_embedder, export_student, load_export
from .onnx_export import export_onnx, to_fp16, to_int8
from .parity import Parity, ParityError, check_parity, make_parity_inputs, measure_parity

__all__ = [
    "ExportedEmbedder",
    "Parity",
    "ParityError",
    "check_parity",
    "export_embedder",
    "export_onnx",
    "export_student",
    "load_export",
    "make_parity_inputs",
    "measure_parity",
    "to_fp16",
    "to_int8",
]
