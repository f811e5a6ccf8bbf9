"""Every error path of fastattr.index: class and message."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from fastattr import index
from fastattr.errors import FastattrError, IndexFormatError, IndexQueryError

DIM = 16


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> index.Index:
    path = tmp_path_factory.mktemp("err") / "small.fai"
    vectors = np.random.default_rng(0).standard_normal((20, DIM)).astype(np.float32)
    index.build(path, vectors, np.arange(100, 120, dtype=np.uint64))
    return index.open(path)


def query() -> np.ndarray:
    return np.ones(DIM, np.float32)


# ---- searching ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 21}, "holds only 20"),
        ({"k": 0}, "at least 1"),
        ({"k": -3}, "at least 1"),
        ({"k": 2.5}, "must be an integer"),
        ({"k": True}, "must be an integer"),
        ({"k": 2**70}, "does not fit in 64 bits"),
        ({"k": 5, "threads": -1}, "threads must be"),
        ({"k": 5, "rerank": -1}, "rerank must be"),
        ({"k": 5, "threads": 0}, "threads must be"),
        ({"k": 5, "threads": 5000}, "threads must be"),
        ({"k": 5, "exclude": [-1]}, "non-negative"),
        ({"k": 5, "exclude": [1.5]}, "integers"),
        ({"k": 5, "exclude": ["a"]}, "integers"),
        ({"k": 5, "exclude": 7}, "iterable"),
        ({"k": 5, "exclude": [[1, 2]]}, "1-D"),
        ({"k": 20, "exclude": [100]}, "19 searchable items"),
    ],
)
def test_bad_search_arguments(small: index.Index, kwargs: dict, message: str) -> None:
    with pytest.raises(IndexQueryError, match=message):
        small.search(query(), **kwargs)


def test_exclude_of_everything(small: index.Index) -> None:
    with pytest.raises(IndexQueryError, match="0 searchable items") as info:
        small.search(query(), 1, exclude=small.ids)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FastattrError)


def test_wrong_dim(small: index.Index) -> None:
    with pytest.raises(IndexQueryError, match="has dim 15 but the index"):
        small.search(np.ones(DIM - 1, np.float32), 3)
    with pytest.raises(IndexQueryError, match="has dim 17 but the index"):
        small.search_batch(np.ones((2, DIM + 1), np.float32), 3)


def test_wrong_rank(small: index.Index) -> None:
    with pytest.raises(IndexQueryError, match="use search_batch"):
        small.search(np.ones((2, DIM), np.float32), 3)
    with pytest.raises(IndexQueryError, match="search_batch takes queries of shape"):
        small.search_batch(np.ones(DIM, np.float32), 3)
    with pytest.raises(IndexQueryError, match="real numbers"):
        small.search(np.array(["x"] * DIM), 3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_queries(small: index.Index, bad: float) -> None:
    q = query()
    q[4] = bad
    with pytest.raises(IndexQueryError, match="NaN or infinite value at position 4"):
        small.search(q, 3)
    batch = np.ones((3, DIM), np.float32)
    batch[2, 1] = bad
    with pytest.raises(IndexQueryError, match="query 2 has a NaN"):
        small.search_batch(batch, 3)


def test_core_checks_queries_too(small: index.Index) -> None:
    # The native layer owns these checks and their messages, whoever calls it.
    core = small._core
    none = np.zeros(0, np.uint64)
    q = np.ones((1, DIM), np.float32)
    q[0, 0] = np.nan
    with pytest.raises(IndexQueryError, match="query 0 has a NaN or infinite value at position 0"):
        core.search(q, 3, none, 4, 0)
    with pytest.raises(IndexQueryError, match="the query has dim 3 but the index"):
        core.search(np.ones((1, 3), np.float32), 3, none, 4, 0)
    for k in (0, -3):
        with pytest.raises(IndexQueryError, match=f"k must be at least 1, got {k}"):
            core.search(np.ones((1, DIM), np.float32), k, none, 4, 0)
    with pytest.raises(IndexQueryError, match="k = 50 but the index holds only 20 items"):
        core.search(np.ones((1, DIM), np.float32), 50, none, 4, 0)
    with pytest.raises(IndexQueryError, match="k = 10000000000000 but the index holds only 20"):
        core.search(np.ones((1, DIM), np.float32), 10**13, none, 4, 0)   # refused before any allocation
    with pytest.raises(IndexQueryError, match="rerank must be 0"):
        core.search(np.ones((1, DIM), np.float32), 3, none, -1, 0)
    with pytest.raises(IndexQueryError, match="threads must be between 1 and 1024"):
        core.search(np.ones((1, DIM), np.float32), 3, none, 4, -2)
    with pytest.raises(IndexQueryError, match="threads must be between 1 and 1024"):
        core.warmup(5000)
    with pytest.raises(IndexQueryError, match="2-D array"):
        core.search(np.ones(DIM, np.float32), 3, none, 4, 0)


def test_core_checks_writer_input_too(tmp_path: Path) -> None:
    from fastattr import _core

    with pytest.raises(IndexFormatError, match="cannot build an index of dim -1: dim must be in"):
        _core.Writer(str(tmp_path / "w.fai"), -1, False)
    writer = _core.Writer(str(tmp_path / "w.fai"), DIM, False)
    with pytest.raises(IndexFormatError, match=r"vectors must have shape \(n, 16\), got \(2, 17\)"):
        writer.append(np.ones((2, DIM + 1), np.float32), np.arange(2, dtype=np.uint64))
    with pytest.raises(IndexFormatError, match="got 2 vectors but 3 ids"):
        writer.append(np.ones((2, DIM), np.float32), np.arange(3, dtype=np.uint64))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


# ---- building -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vectors", "ids", "message"),
    [
        (np.zeros((0, DIM), np.float32), np.zeros(0, np.uint64), "empty index"),
        (np.ones(DIM, np.float32), [1], "2-D array"),
        (np.ones((3, DIM), np.float32), [1, 2], "3 vectors but 2 ids"),
        (np.ones((3, DIM), np.float32), [1, -2, 3], "non-negative"),
        (np.ones((3, DIM), np.float32), [1.0, 2.0, 3.0], "integers"),
        (np.ones((3, DIM), np.float32), [[1, 2, 3]], "1-D"),
        (np.ones((3, DIM), np.float32), [4, 5, 4], "id 4 appears twice"),
        (np.array([["a"] * DIM]), [1], "real numbers"),
        (np.ones((2, 0), np.float32), [1, 2], "dim 0"),
        (np.ones((2, 20000), np.float32), [1, 2], "dim 20000"),
    ],
)
def test_bad_build_inputs(tmp_path: Path, vectors, ids, message: str) -> None:
    with pytest.raises(IndexFormatError, match=message):
        index.build(tmp_path / "bad.fai", vectors, ids)
    assert list(tmp_path.iterdir()) == []  # nothing left behind, not even a temporary file


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_vectors(tmp_path: Path, bad: float) -> None:
    vectors = np.ones((5, DIM), np.float32)
    vectors[3, 7] = bad
    with pytest.raises(IndexFormatError, match=r"vector 3 \(id 13\) has a NaN or infinite value at position 7"):
        index.build(tmp_path / "bad.fai", vectors, np.arange(10, 15))
    assert list(tmp_path.iterdir()) == []


def test_writer_misuse(tmp_path: Path) -> None:
    writer = index.IndexWriter(tmp_path / "w.fai", DIM)
    with pytest.raises(IndexFormatError, match=r"shape \(n, 16\)"):
        writer.append(np.ones((2, DIM + 1), np.float32), [1, 2])
    with pytest.raises(IndexFormatError, match="2 vectors but 1 ids"):
        writer.append(np.ones((2, DIM), np.float32), [1])
    writer.append(np.ones((2, DIM), np.float32), [1, 2])
    writer.close()
    with pytest.raises(IndexFormatError, match="already closed"):
        writer.append(np.ones((1, DIM), np.float32), [3])
    with pytest.raises(IndexFormatError, match="dim must be in"):
        index.IndexWriter(tmp_path / "x.fai", 0)
    with pytest.raises(IndexFormatError, match="must be an integer"):
        index.IndexWriter(tmp_path / "x.fai", "8")
    empty = index.IndexWriter(tmp_path / "e.fai", DIM)
    with pytest.raises(IndexFormatError, match="empty index"):
        empty.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.fai"]


# ---- opening --------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="no index file at"):
        index.open(tmp_path / "nope.fai")


def test_directory_is_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="not a regular file"):
        index.open(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "fewer than the 4096-byte header"),
        (b"\x89FAIDX\r\n" + b"\0" * 100, "fewer than the 4096-byte header"),
        (b"\x93NUMPY" + b"\0" * 5000, "bad magic"),
        (bytes(range(256)) * 40, "bad magic"),
    ],
)
def test_foreign_files(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "f.fai").write_bytes(content)
    with pytest.raises(IndexFormatError, match=message):
        index.open(tmp_path / "f.fai")


def test_truncated_and_extended_files(tmp_path: Path, small: index.Index) -> None:
    data = Path(small.path).read_bytes()
    for size in (5000, len(data) // 2, len(data) - 1):
        (tmp_path / "t.fai").write_bytes(data[:size])
        with pytest.raises(IndexFormatError, match="truncated"):
            index.open(tmp_path / "t.fai")
    (tmp_path / "t.fai").write_bytes(data + b"\0" * 64)
    with pytest.raises(IndexFormatError, match="declares"):
        index.open(tmp_path / "t.fai")


def test_unknown_version(tmp_path: Path, small: index.Index) -> None:
    data = bytearray(Path(small.path).read_bytes())
    struct.pack_into("<I", data, 8, 2)  # version_major follows the 8 magic bytes
    (tmp_path / "v.fai").write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="format version 2; this fastattr reads version 1"):
        index.open(tmp_path / "v.fai")


@pytest.mark.parametrize("offset", [24, 40, 48, 64, 100, 190, 300, 4095])
def test_corrupted_header(tmp_path: Path, small: index.Index, offset: int) -> None:
    data = bytearray(Path(small.path).read_bytes())
    data[offset] ^= 0x41
    (tmp_path / "h.fai").write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="header checksum"):
        index.open(tmp_path / "h.fai")


def test_corrupted_data_is_found_by_verify(tmp_path: Path, small: index.Index) -> None:
    data = bytearray(Path(small.path).read_bytes())
    data[len(data) - 70] ^= 0x10
    (tmp_path / "d.fai").write_bytes(bytes(data))
    opened = index.open(tmp_path / "d.fai")  # open stays O(1): it checks only the header
    with pytest.raises(IndexFormatError, match="data checksum does not match"):
        opened.verify()
