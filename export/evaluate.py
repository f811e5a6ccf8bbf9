"""mAP of each exported variant (fp32, fp16, int8) on the teacher's test queries: what quantization costs.

Scores are exact cosines between ONNX embeddings (no index), so the difference between
variants is the embedder's alone. mAP(L) follows DESIGN.md §4 (``fastattr.student.metrics``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fastattr.errors import CheckpointError
from fastattr.onnx_embedder import embed_items

from .embedder import load_export

__all__ = ["variant_maps"]


def variant_maps(
    embedder: str | os.PathLike[str],
    dataset: Any,
    teacher_set: str | os.PathLike[str],
    *,
    threads: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """mAP(L) ± SE of every variant in an exported-embedder folder, and its change vs fp32.

    Returns:
        ``{"L": [...], "n_test_queries": Q, "variants": {role: {"map": [{"L", "mean", "se"}],
        "delta_map": [...]}}}`` with role "embedder" (fp32), "embedder_fp16", "embedder_int8".

    Example:
        >>> variant_maps("runs/export", "runs/world", "runs/teacher")["variants"]["embedder_int8"]["delta_map"]  # doctest: +SKIP
    """
    from fastattr.student.data import load_teacher_set
    from fastattr.student.metrics import cutoffs, map_at, mean_se
    from fastattr.data import open_dataset

    exported = load_export(embedder)
    data = open_dataset(dataset)
    teacher = load_teacher_set(teacher_set, n_items=len(data))
    test = teacher.queries("test")
    if len(test) == 0:
        raise CheckpointError(f"teacher set {teacher_set} has no test queries; mAP needs them")
    orders = np.stack([teacher.full_ranking(int(q)) for q in test])
    cuts = cutoffs(len(data))
    roles = {"embedder": exported.onnx_path, **exported.variants()}
    out: dict[str, Any] = {"L": cuts, "n_test_queries": int(len(test)), "variants": {}}
    base: list[float] | None = None
    for role, path in roles.items():
        common = dict(batch_size=128, threads=threads, progress=progress)
        items = embed_items(path, exported.spec, exported.tokenizer_path, data.images, list(data.captions), **common)
        queries = embed_items(path, exported.spec, exported.tokenizer_path, teacher.query_images[test],
                              [teacher.captions[int(q)] for q in test], **common)
        scores = queries @ items.T
        maps = [dict(zip(("mean", "se"), mean_se(map_at(scores, orders, cut))), L=cut) for cut in cuts]
        means = [m["mean"] for m in maps]
        base = means if base is None else base
        out["variants"][role] = {"map": maps, "delta_map": [m - b for m, b in zip(means, base)]}
    return out
