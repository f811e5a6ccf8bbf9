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
    """A loaded teacher set (docs/CONTRACTS.md "Teacher set"): queries, their images and ranked pairs.

    The one reader of the folder: the teacher's tests, the student and the export's evaluation
    all load it with :func:`load_teacher_set`.

    Attributes:
        captions, splits: one per query (query_id = row); splits are "train" or "test".
        query_images: uint8 (Q, H, W, 3), memory-mapped.
        query_id, item_id, rank, score: the equal-length pair arrays of ``pairs.npz`` (int64,
            int64, int32 with 0 = most influential, float32 τ).
        meta: ``teacher_set.json``.
        path: the folder.
        n_items: the training-set size N the set was made for (``meta["n_items"]``).

    Example:
        >>> ts = load_teacher_set("runs/teacher")  # doctest: +SKIP
        >>> ts.full_ranking(int(ts.queries("test")[0]))[:10]  # doctest: +SKIP
    """

    captions: list[str]
    splits: list[str]
    query_images: np.ndarray
    query_id: np.ndarray
    item_id: np.ndarray
    rank: np.ndarray
    score: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    n_items: int = -1

    @property
    def n_queries(self) -> int:
        return len(self.captions)

    def queries(self, split: str) -> np.ndarray:
        """Query ids of one split, ascending."""
        return np.flatnonzero(np.asarray(self.splits, dtype=object) == split).astype(np.int64)

    def pairs_of(self, query_ids: np.ndarray) -> np.ndarray:
        """Indices into the pair arrays whose query is in ``query_ids``."""
        return np.flatnonzero(np.isin(self.query_id, query_ids))

    def pairs_per_query(self) -> np.ndarray:
        """M_q for every query."""
        return np.bincount(self.query_id, minlength=self.n_queries)

    def full_ranking(self, query: int) -> np.ndarray:
        """Item rows of one query in teacher order (most influential first)."""
        sel = np.flatnonzero(self.query_id == query)
        return self.item_id[sel[np.argsort(self.rank[sel], kind="stable")]]


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


def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"Teacher set {path}: {what}. Re-run `fastattr teacher curate` to rebuild it.")


_PAIR_DTYPES = {"query_id": np.int64, "item_id": np.int64, "rank": np.int32, "score": np.float32}


def load_teacher_set(path: str | os.PathLike[str], *, n_items: int | None = None) -> TeacherSet:
    """Read a teacher-set folder and check it against the contract (no pickle).

    ``n_items`` (the dataset's N) is cross-checked when given. Refused with a
    :class:`~fastattr.errors.CheckpointError`: an unfinished folder, another format or version,
    missing files, lengths that disagree, ranks that are not 0..M_q-1 per query, item or query
    ids out of range, repeated pairs, and test queries not ranked over the whole training set.

    Example:
        >>> ts = load_teacher_set("runs/teacher", n_items=4096)  # doctest: +SKIP
    """
    root = Path(path)
    marker = root / "teacher_set.json"
    if not marker.is_file():
        raise CheckpointError(
            f"{root} is not a finished teacher set: teacher_set.json is missing (curation writes it "
            "last, so a folder with no teacher_set.json was never completed). "
            "Run (or resume) `fastattr teacher curate`."
        )
    meta = json.loads(marker.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise _fail(root, f"format {meta.get('format')!r} version {meta.get('version')!r} is not "
                          f"{FORMAT!r} version {VERSION}")
    for name in ("queries.jsonl", "query_images.npy", "pairs.npz"):
        if not (root / name).is_file():
            raise _fail(root, f"{name} is missing")
    rows = [json.loads(line) for line in (root / "queries.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    if [int(r["query_id"]) for r in rows] != list(range(len(rows))):
        raise _fail(root, "queries.jsonl query_id values must be 0..Q-1 in row order")
    splits = [str(r["split"]) for r in rows]
    if not set(splits) <= {"train", "test"}:
        raise _fail(root, f"unknown split names {sorted(set(splits) - {'train', 'test'})}")
    images = np.load(root / "query_images.npy", mmap_mode="r", allow_pickle=False)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise _fail(root, f"query_images.npy is {images.dtype} {images.shape}, expected uint8 (Q, H, W, 3)")
    if images.shape[0] != len(rows):
        raise _fail(root, f"queries.jsonl ({len(rows)} queries) and query_images.npy ({images.shape[0]} "
                          "images) disagree in length")
    with np.load(root / "pairs.npz", allow_pickle=False) as z:
        missing = set(_PAIR_DTYPES) - set(z.files)
        if missing:
            raise _fail(root, f"pairs.npz lacks arrays {sorted(missing)}")
        arrays = {k: z[k].astype(dtype, copy=False) for k, dtype in _PAIR_DTYPES.items()}
    qid, iid, rank = arrays["query_id"], arrays["item_id"], arrays["rank"]
    if len({len(a) for a in arrays.values()}) != 1:
        raise _fail(root, "the pairs.npz arrays disagree in length")
    n = int(meta.get("n_items", -1))
    if n_items is not None and n != n_items:
        raise _fail(root, f"it was made for {n} items but the dataset has {n_items}")
    if len(qid) and (qid.min() < 0 or qid.max() >= len(rows)):
        raise _fail(root, "pairs.npz query_id values fall outside queries.jsonl")
    if len(iid) and (iid.min() < 0 or iid.max() >= n):
        raise _fail(root, f"pairs.npz item_id values fall outside 0..{n - 1}")
    # Each query's ranks must be exactly 0..M_q-1 (so the student's y = 1 - r/M_q is well defined).
    order = np.lexsort((rank, qid))
    counts = np.bincount(qid, minlength=len(rows))
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    if not np.array_equal(rank[order], np.arange(len(qid)) - starts):
        raise _fail(root, "some query's ranks are not a permutation of 0..M_q-1")
    if len(np.unique(qid * max(n, 1) + iid)) != len(qid):
        raise _fail(root, "some (query, item) pair appears twice")
    test = np.asarray(splits, dtype=object) == "test"
    if np.any(counts[test] != n):
        bad = int(np.flatnonzero(test & (counts != n))[0])
        raise _fail(root, f"test query {bad} ranks {counts[bad]} items, not the whole training set ({n})")
    return TeacherSet(captions=[str(r["caption"]) for r in rows], splits=splits, query_images=np.asarray(images),
                      meta=meta, path=root, n_items=n, **arrays)
