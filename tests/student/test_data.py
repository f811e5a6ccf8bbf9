"""Reading the teacher set: a valid one loads; every contract violation is refused with a clear message."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fastattr.errors import CheckpointError
from fastattr.student.data import load_items
from fastattr.teacher.teacher_set import load_teacher_set


def test_loads_and_checks(teacher_dir, world):
    ts = load_teacher_set(teacher_dir, n_items=len(world))
    assert ts.n_queries == 30 and len(ts.queries("train")) == 24 and len(ts.queries("test")) == 6
    assert np.all(ts.pairs_per_query()[ts.queries("test")] == len(world))
    order = ts.full_ranking(int(ts.queries("test")[0]))
    assert sorted(order.tolist()) == list(range(len(world)))
    items = load_items(world.path)
    assert len(items) == len(world) and items.images.dtype == np.uint8


def _copy(teacher_dir, tmp_path):
    dst = tmp_path / "ts"
    shutil.copytree(teacher_dir, dst)
    return dst


def _rewrite_pairs(folder, **changes):
    with np.load(folder / "pairs.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(folder / "pairs.npz", **arrays)
    return arrays


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="teacher_set.json is missing"):
        load_teacher_set(tmp_path)


def test_wrong_format(teacher_dir, tmp_path):
    folder = _copy(teacher_dir, tmp_path)
    (folder / "teacher_set.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(CheckpointError, match="is not 'fastattr-teacher-set'"):
        load_teacher_set(folder)


def test_missing_file(teacher_dir, tmp_path):
    folder = _copy(teacher_dir, tmp_path)
    (folder / "pairs.npz").unlink()
    with pytest.raises(CheckpointError, match="pairs.npz is missing"):
        load_teacher_set(folder)


def test_size_mismatch(teacher_dir, tmp_path):
    with pytest.raises(CheckpointError, match="made for 160 items but the dataset has 10"):
        load_teacher_set(teacher_dir, n_items=10)


def test_ranks_must_be_a_permutation(teacher_dir, tmp_path):
    folder = _copy(teacher_dir, tmp_path)
    with np.load(folder / "pairs.npz") as z:
        rank = z["rank"].copy()
    rank[1] = rank[0]
    _rewrite_pairs(folder, rank=rank)
    with pytest.raises(CheckpointError, match="not a permutation"):
        load_teacher_set(folder)


def test_item_out_of_range(teacher_dir, tmp_path):
    folder = _copy(teacher_dir, tmp_path)
    with np.load(folder / "pairs.npz") as z:
        item = z["item_id"].copy()
    item[0] = 10_000
    _rewrite_pairs(folder, item_id=item)
    with pytest.raises(CheckpointError, match="item_id values fall outside"):
        load_teacher_set(folder)


def test_test_query_must_rank_everything(teacher_dir, tmp_path):
    folder = _copy(teacher_dir, tmp_path)
    with np.load(folder / "pairs.npz") as z:
        arrays = {k: z[k] for k in z.files}
    last_test = arrays["query_id"].max()
    keep = ~((arrays["query_id"] == last_test) & (arrays["rank"] == arrays["rank"][arrays["query_id"] == last_test].max()))
    np.savez(folder / "pairs.npz", **{k: v[keep] for k, v in arrays.items()})
    with pytest.raises(CheckpointError, match="not the whole training set"):
        load_teacher_set(folder)


def test_bad_query_images(teacher_dir, tmp_path):
    folder = _copy(teacher_dir, tmp_path)
    np.save(folder / "query_images.npy", np.zeros((2, 16, 16, 3), np.float32))
    with pytest.raises(CheckpointError, match="query_images.npy is float32"):
        load_teacher_set(folder)
