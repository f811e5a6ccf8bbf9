"""Reading the student's inputs: the dataset folder and the teacher set, checked against the contracts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, DatasetError

__all__ = ["TeacherSet", "load_teacher_set", "load_items"]

TEACHER_FORMAT = "fastattr-teacher-set"


@dataclass
class Items:
    """What the student needs of a dataset: images (uint8 N×H×W×3) and captions, in row order."""

    images: np.ndarray
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)


def load_items(dataset: Any) -> Items:
    """The images and captions of a dataset (a loaded ``fastattr.data.Dataset`` or a folder).

    Example:
        >>> items = load_items("data/world")  # doctest: +SKIP
    """
    from ..data import open_dataset

    ds = open_dataset(dataset)
    return Items(images=ds.images, captions=list(ds.captions))


@dataclass
class TeacherSet:
    """A teacher set (docs/CONTRACTS.md "Teacher set"): queries, their images, and ranked pairs.

    Example:
        >>> ts = load_teacher_set("runs/teacher")  # doctest: +SKIP
        >>> ts.test_queries()  # doctest: +SKIP
    """

    path: Path
    meta: dict[str, Any]
    captions: list[str]
    splits: np.ndarray  # (Q,) str: "train" | "test"
    query_images: np.ndarray  # (Q, H, W, 3) uint8
    query_id: np.ndarray  # (P,) int64
    item_id: np.ndarray  # (P,) int64
    rank: np.ndarray  # (P,) int64, 0 = most influential
    score: np.ndarray  # (P,) float32, the teacher's tau
    n_items: int

    @property
    def n_queries(self) -> int:
        return len(self.captions)

    def queries(self, split: str) -> np.ndarray:
        """Query ids of one split, ascending."""
        return np.flatnonzero(self.splits == split).astype(np.int64)

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


def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"Teacher set {path}: {what}. Re-run `fastattr teacher curate` to rebuild it.")


def load_teacher_set(path: str | Path, *, n_items: int | None = None) -> TeacherSet:
    """Read and check a teacher-set folder; ``n_items`` (the dataset's N) is cross-checked when given.

    Example:
        >>> ts = load_teacher_set("runs/teacher", n_items=4096)  # doctest: +SKIP
    """
    root = Path(path)
    meta_file = root / "teacher_set.json"
    if not meta_file.is_file():
        raise CheckpointError(f"{root} is not a teacher set: teacher_set.json is missing. "
                              "Make one with `fastattr teacher curate`.")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != TEACHER_FORMAT or int(meta.get("version", 0)) != 1:
        raise _fail(root, f"format {meta.get('format')!r} version {meta.get('version')!r} is not "
                          f"{TEACHER_FORMAT!r} version 1")
    for name in ("queries.jsonl", "query_images.npy", "pairs.npz"):
        if not (root / name).is_file():
            raise _fail(root, f"{name} is missing")
    rows = [json.loads(line) for line in (root / "queries.jsonl").read_text().splitlines() if line.strip()]
    if [int(r["query_id"]) for r in rows] != list(range(len(rows))):
        raise _fail(root, "queries.jsonl query_id values must be 0..Q-1 in row order")
    splits = np.asarray([r["split"] for r in rows], dtype=object)
    if not set(splits.tolist()) <= {"train", "test"}:
        raise _fail(root, f"unknown split names {sorted(set(splits.tolist()) - {'train', 'test'})}")
    images = np.load(root / "query_images.npy", mmap_mode="r", allow_pickle=False)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != len(rows) or images.shape[-1] != 3:
        raise _fail(root, f"query_images.npy is {images.dtype} {images.shape}, expected uint8 ({len(rows)}, H, W, 3)")
    with np.load(root / "pairs.npz", allow_pickle=False) as z:
        missing = {"query_id", "item_id", "rank", "score"} - set(z.files)
        if missing:
            raise _fail(root, f"pairs.npz lacks arrays {sorted(missing)}")
        qid, iid = z["query_id"].astype(np.int64), z["item_id"].astype(np.int64)
        rank, score = z["rank"].astype(np.int64), z["score"].astype(np.float32)
    if not len(qid) == len(iid) == len(rank) == len(score):
        raise _fail(root, "pairs.npz arrays differ in length")
    n = int(meta.get("n_items", -1))
    if n_items is not None and n != n_items:
        raise _fail(root, f"it was made for {n} items but the dataset has {n_items}")
    if len(qid) and (qid.min() < 0 or qid.max() >= len(rows)):
        raise _fail(root, "pairs.npz query_id values fall outside queries.jsonl")
    if len(iid) and (iid.min() < 0 or iid.max() >= n):
        raise _fail(root, f"pairs.npz item_id values fall outside 0..{n - 1}")
    # Each query's ranks must be exactly 0..M_q-1 (so y = 1 - r/M_q is well defined).
    order = np.lexsort((rank, qid))
    counts = np.bincount(qid, minlength=len(rows))
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    if not np.array_equal(rank[order], np.arange(len(qid)) - starts):
        raise _fail(root, "some query's ranks are not a permutation of 0..M_q-1")
    pairs_seen = np.unique(qid * max(n, 1) + iid)
    if len(pairs_seen) != len(qid):
        raise _fail(root, "some (query, item) pair appears twice")
    test = splits == "test"
    if np.any(counts[test] != n):
        bad = int(np.flatnonzero(test & (counts != n))[0])
        raise _fail(root, f"test query {bad} ranks {counts[bad]} items, not the whole training set ({n})")
    return TeacherSet(path=root, meta=meta, captions=[str(r["caption"]) for r in rows], splits=splits,
                      query_images=np.asarray(images), query_id=qid, item_id=iid, rank=rank, score=score,
                      n_items=n)


def check_dataset_size(items: Items, where: str | Path) -> None:
    """Refuse an empty dataset early, with the folder named."""
    if len(items) == 0:
        raise DatasetError(f"Dataset {where} has no items; make one with `fastattr world make`.")
