"""The teacher-set folder (docs/CONTRACTS.md): queries, their images and ranked (query, item) pairs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._atomic import atomic_open, save_npy, write_json, write_text
from ..errors import CheckpointError

__all__ = ["FORMAT", "VERSION", "TeacherSet", "write_teacher_set", "load_teacher_set", "ranks_of"]

FORMAT = "fastattr-teacher-set"
VERSION = 1


@dataclass
class TeacherSet:
    """A loaded teacher set.

    Attributes:
        captions, splits: one per query (query_id = row); splits are "train" or "test".
        query_images: uint8 (Q, H, W, 3).
        query_id, item_id, rank, score: the equal-length pair arrays of ``pairs.npz``.
        meta: ``teacher_set.json``.

    Example:
        >>> ts = load_teacher_set("runs/teacher")  # doctest: +SKIP
        >>> ts.item_id[ts.query_id == 0][ts.rank[ts.query_id == 0] == 0]  # doctest: +SKIP
    """

    captions: list[str]
    splits: list[str]
    query_images: np.ndarray
    query_id: np.ndarray
    item_id: np.ndarray
    rank: np.ndarray
    score: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def ranks_of(scores: np.ndarray) -> np.ndarray:
    """Rank of each score, 0 = largest; ties keep the input order (deterministic).

    Example:
        >>> ranks_of(np.array([0.1, 0.5, 0.3])).tolist()
        [2, 0, 1]
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranks = np.empty(len(order), dtype=np.int32)
    ranks[order] = np.arange(len(order), dtype=np.int32)
    return ranks


def write_teacher_set(
    path: str | os.PathLike[str],
    *,
    captions: Sequence[str],
    splits: Sequence[str],
    query_images: np.ndarray,
    results: Sequence[tuple[np.ndarray, np.ndarray]],
    meta: dict[str, Any],
    sources: Sequence[str] | None = None,
) -> Path:
    """Write the folder; ``results[q] = (item rows, scores)`` of query q. ``teacher_set.json`` last.

    ``sources[q]`` says where query q's image came from ("generated", or a logged image's path).

    Each file is written atomically, and ``teacher_set.json`` (the marker a reader checks) is
    written only after the others, so a crash never leaves a folder that looks complete.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    (root / "teacher_set.json").unlink(missing_ok=True)
    qids, items, ranks, scores = [], [], [], []
    for q, (item_rows, tau) in enumerate(results):
        qids.append(np.full(len(item_rows), q, dtype=np.int64))
        items.append(np.asarray(item_rows, dtype=np.int64))
        ranks.append(ranks_of(tau))
        scores.append(np.asarray(tau, dtype=np.float32))
    lines = [
        json.dumps({"query_id": q, "caption": c, "split": s,
                    **({"source": sources[q]} if sources is not None else {})})
        for q, (c, s) in enumerate(zip(captions, splits))
    ]
    write_text(root / "queries.jsonl", "".join(line + "\n" for line in lines))
    save_npy(root / "query_images.npy", np.asarray(query_images, dtype=np.uint8))
    with atomic_open(root / "pairs.npz", "wb") as handle:
        np.savez(
            handle,
            query_id=np.concatenate(qids) if qids else np.zeros(0, np.int64),
            item_id=np.concatenate(items) if items else np.zeros(0, np.int64),
            rank=np.concatenate(ranks) if ranks else np.zeros(0, np.int32),
            score=np.concatenate(scores) if scores else np.zeros(0, np.float32),
        )
    write_json(root / "teacher_set.json", {"format": FORMAT, "version": VERSION, **meta})
    return root


def load_teacher_set(path: str | os.PathLike[str]) -> TeacherSet:
    """Read and check a teacher-set folder (no pickle).

    Example:
        >>> ts = load_teacher_set("runs/teacher")  # doctest: +SKIP
    """
    root = Path(path)
    marker = root / "teacher_set.json"
    if not marker.is_file():
        raise CheckpointError(
            f"{root} has no teacher_set.json: not a finished teacher set. "
            "Run (or resume) `fastattr teacher curate`."
        )
    meta = json.loads(marker.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(
            f"{marker} declares format {meta.get('format')!r} version {meta.get('version')!r}; "
            f"this fastattr reads {FORMAT!r} version {VERSION}"
        )
    rows = [json.loads(line) for line in (root / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line]
    with np.load(root / "pairs.npz", allow_pickle=False) as pairs:
        arrays = {k: pairs[k] for k in ("query_id", "item_id", "rank", "score")}
    images = np.load(root / "query_images.npy", allow_pickle=False)
    if len(images) != len(rows) or len({len(a) for a in arrays.values()}) != 1:
        raise CheckpointError(f"{root}: queries, query images and pair arrays disagree in length")
    return TeacherSet(
        captions=[r["caption"] for r in rows],
        splits=[r["split"] for r in rows],
        query_images=images,
        meta=meta,
        **arrays,
    )
