"""Tests of fastattr.teacher.teacher_set: the contract folder, written and read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastattr.errors import CheckpointError
from fastattr.teacher.teacher_set import load_teacher_set, ranks_of, write_teacher_set


def test_ranks_of_breaks_ties_by_position() -> None:
    assert ranks_of(np.array([0.2, 0.9, 0.2, -1.0])).tolist() == [1, 0, 2, 3]


def test_roundtrip(tmp_path) -> None:
    # The test query ranks the whole training set (8 items), as the contract (and the reader) demand.
    results = [(np.array([4, 2, 7]), np.array([0.1, 0.3, -0.2])),
               (np.arange(8), np.array([1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]))]
    write_teacher_set(tmp_path / "t", captions=["a", "b"], splits=["train", "test"],
                      query_images=np.zeros((2, 4, 4, 3), np.uint8), results=results,
                      meta={"n_items": 8, "candidates_k": 3, "subsample_m": None, "timesteps": [1]})
    ts = load_teacher_set(tmp_path / "t", n_items=8)
    assert ts.query_id.tolist() == [0, 0, 0] + [1] * 8
    assert ts.item_id.tolist() == [4, 2, 7, 0, 1, 2, 3, 4, 5, 6, 7]
    assert ts.rank.tolist() == [1, 0, 2, 2, 1, 0, 3, 4, 5, 6, 7]
    assert ts.meta["format"] == "fastattr-teacher-set" and ts.meta["version"] == 1
    rows = [json.loads(x) for x in (tmp_path / "t" / "queries.jsonl").read_text().splitlines()]
    assert rows[1] == {"query_id": 1, "caption": "b", "split": "test"}


def test_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no teacher_set.json"):
        load_teacher_set(tmp_path)
    write_teacher_set(tmp_path / "t", captions=["a"], splits=["train"], query_images=np.zeros((1, 2, 2, 3), np.uint8),
                      results=[(np.arange(2), np.zeros(2))], meta={})
    marker = tmp_path / "t" / "teacher_set.json"
    marker.write_text(json.dumps({"format": "fastattr-teacher-set", "version": 2}))
    with pytest.raises(CheckpointError, match="version 2"):
        load_teacher_set(tmp_path / "t")
    marker.write_text(json.dumps({"format": "fastattr-teacher-set", "version": 1}))
    np.save(tmp_path / "t" / "query_images.npy", np.zeros((3, 2, 2, 3), np.uint8))
    with pytest.raises(CheckpointError, match="disagree"):
        load_teacher_set(tmp_path / "t")
