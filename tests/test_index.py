"""Tests of fastattr.index search results against an exact numpy top-k."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fastattr import index


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_data(n: int, dim: int, seed: int) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed).standard_normal((n, dim)))


def clustered_data(n: int, dim: int, seed: int, n_clusters: int = 20, spread: float = 0.15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim))
    labels = rng.integers(0, n_clusters, n)
    return unit_rows(centers[labels] + spread * rng.standard_normal((n, dim)))


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ vectors.T.astype(np.float64)
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return rows, np.take_along_axis(scores, rows, axis=1)


def assert_matches_exact(
    found_ids: np.ndarray, found_scores: np.ndarray, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray,
    k: int, tol: float,
) -> float:
    """Each result is a true top-k item up to `tol` and carries its true score; returns exact-id agreement."""
    row_of = {int(item): row for row, item in enumerate(ids)}
    exact_rows, exact_scores = exact_top(vectors, queries, k)
    agree = 0
    for q in range(len(queries)):
        rows = np.array([row_of[int(item)] for item in found_ids[q]])
        assert len(set(rows.tolist())) == k, "results repeat an item"
        true = vectors[rows].astype(np.float64) @ queries[q].astype(np.float64)
        np.testing.assert_allclose(found_scores[q], true, atol=tol)
        assert np.all(np.diff(found_scores[q]) <= 0), "scores are not descending"
        assert true.min() >= exact_scores[q, -1] - tol, "a result is not among the true top k"
        agree += int(np.sum(rows == exact_rows[q]))
    return agree / found_ids.size


@pytest.fixture(scope="module")
def random_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[index.Index, np.ndarray, np.ndarray]:
    vectors = random_data(3000, 96, seed=1)
    ids = np.arange(3000, dtype=np.uint64) * 13 + 5
    path = tmp_path_factory.mktemp("idx") / "random.fai"
    index.build(path, vectors, ids)
    return index.open(path), vectors, ids


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize("dim", [64, 100])
def test_search_agrees_with_exact_numpy(tmp_path: Path, kind: str, dim: int) -> None:
    make = random_data if kind == "random" else clustered_data
    vectors = make(4000, dim, seed=dim)
    ids = np.random.default_rng(7).permutation(10**6)[:4000].astype(np.uint64)
    index.build(tmp_path / "a.fai", vectors, ids)
    found = index.open(tmp_path / "a.fai")
    queries = make(25, dim, seed=dim + 1)
    got_ids, got_scores = found.search_batch(queries, 10)
    agreement = assert_matches_exact(got_ids, got_scores, vectors, ids, queries, 10, tol=2e-3)
    assert agreement >= 0.97
    for q in range(5):  # single queries give exactly the batch's answers
        one_ids, one_scores = found.search(queries[q], 10)
        np.testing.assert_array_equal(one_ids, got_ids[q])
        np.testing.assert_array_equal(one_scores, got_scores[q])


def test_quantized_scan_recall_and_scores(random_index) -> None:
    found, vectors, ids = random_index
    queries = random_data(50, 96, seed=2)
    got_ids, got_scores = found.search_batch(queries, 10, rerank=0)
    exact_rows, exact_scores = exact_top(vectors, queries, 10)
    recall = np.mean([len(set(got_ids[q].tolist()) & set(ids[exact_rows[q]].tolist())) / 10 for q in range(50)])
    assert recall >= 0.9
    # int8 estimates stay close to the true inner products of unit vectors
    row_of = {int(item): row for row, item in enumerate(ids)}
    rows = np.vectorize(lambda item: row_of[int(item)])(got_ids)
    true = np.einsum("qd,qkd->qk", queries, vectors[rows])
    assert np.abs(got_scores - true).max() < 0.02


def test_rerank_restores_exact_order(random_index) -> None:
    found, vectors, ids = random_index
    queries = random_data(50, 96, seed=3)
    got_ids, got_scores = found.search_batch(queries, 10, rerank=4)
    assert assert_matches_exact(got_ids, got_scores, vectors, ids, queries, 10, tol=1e-3) >= 0.99


def test_index_without_rerank_vectors(tmp_path: Path) -> None:
    vectors = random_data(2000, 64, seed=4)
    ids = np.arange(2000, dtype=np.uint64)
    index.build(tmp_path / "q.fai", vectors, ids, rerank_vectors=False)
    index.build(tmp_path / "f.fai", vectors, ids)
    small, full = index.open(tmp_path / "q.fai"), index.open(tmp_path / "f.fai")
    assert not small.has_rerank_vectors and full.has_rerank_vectors
    assert small.file_bytes < full.file_bytes / 2
    queries = random_data(10, 64, seed=5)
    a_ids, a_scores = small.search_batch(queries, 5, rerank=4)  # rerank is ignored without vectors
    b_ids, b_scores = full.search_batch(queries, 5, rerank=0)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_array_equal(a_scores, b_scores)


def test_properties_and_ids_view(random_index) -> None:
    found, vectors, ids = random_index
    assert len(found) == 3000 and found.dim == 96
    np.testing.assert_array_equal(found.ids, ids)
    assert found.ids.dtype == np.uint64 and not found.ids.flags.writeable
    assert "items=3000" in repr(found)
    found.warmup()
    found.warmup(threads=1)
    found.verify()


def test_exclude_removes_items_and_keeps_order(random_index) -> None:
    found, vectors, ids = random_index
    query = random_data(1, 96, seed=6)[0]
    all_ids, all_scores = found.search(query, 20)
    banned = [int(all_ids[0]), int(all_ids[3]), 10**12]  # the last id is not in the index: ignored
    got_ids, got_scores = found.search(query, 10, exclude=banned)
    expected = [item for item in all_ids.tolist() if item not in banned][:10]
    assert got_ids.tolist() == expected
    batch_ids, _ = found.search_batch(np.stack([query, query]), 10, exclude=np.array(banned, dtype=np.uint64))
    assert batch_ids[1].tolist() == expected
    # excluding all but k items leaves exactly those
    keep = ids[:5]
    rest = ids[5:]
    only_ids, _ = found.search(query, 5, exclude=rest)
    assert sorted(only_ids.tolist()) == sorted(keep.tolist())


def test_k_equal_to_n_returns_everything(tmp_path: Path) -> None:
    vectors = clustered_data(50, 16, seed=8, n_clusters=3)
    ids = np.arange(100, 150, dtype=np.uint64)
    index.build(tmp_path / "a.fai", vectors, ids)
    got_ids, got_scores = index.open(tmp_path / "a.fai").search(vectors[0], 50)
    assert sorted(got_ids.tolist()) == ids.tolist()
    assert got_ids[0] == 100


def test_chunked_writer_equals_build(tmp_path: Path) -> None:
    vectors = random_data(1000, 40, seed=9)
    ids = np.arange(1000, dtype=np.uint64)[::-1].copy()
    index.build(tmp_path / "one.fai", vectors, ids)
    with index.IndexWriter(tmp_path / "many.fai", 40) as writer:
        for start in range(0, 1000, 137):
            writer.append(vectors[start : start + 137].astype(np.float64), ids[start : start + 137])
        assert len(writer) == 1000 and writer.dim == 40
    assert (tmp_path / "one.fai").read_bytes() == (tmp_path / "many.fai").read_bytes()


def test_threads_and_inputs_do_not_change_results(random_index) -> None:
    found, _, _ = random_index
    queries = random_data(7, 96, seed=10)
    reference = found.search_batch(queries, 8, threads=1)
    for threads in (2, 3, None):
        got = found.search_batch(queries, 8, threads=threads)
        np.testing.assert_array_equal(got[0], reference[0])
        np.testing.assert_array_equal(got[1], reference[1])
    got = found.search_batch(queries.astype(np.float64).tolist(), 8)  # lists and float64 are converted
    np.testing.assert_array_equal(got[0], reference[0])


def test_zero_vectors_are_valid(tmp_path: Path) -> None:
    vectors = np.zeros((10, 8), np.float32)
    vectors[3, 0] = 1.0
    index.build(tmp_path / "z.fai", vectors, np.arange(10))
    found = index.open(tmp_path / "z.fai")
    ids, scores = found.search(np.eye(8, dtype=np.float32)[0], 3)
    assert ids.tolist() == [3, 0, 1] and scores.tolist() == [1.0, 0.0, 0.0]
    ids, scores = found.search(np.zeros(8, np.float32), 2)  # a zero query scores everything 0, row order
    assert ids.tolist() == [0, 1] and scores.tolist() == [0.0, 0.0]


_KERNEL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from fastattr import index
    path = sys.argv[1]
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((6, 72)).astype(np.float32)
    found = index.open(path)
    ids, scores = found.search_batch(queries, 12, rerank=0)
    ids1, scores1 = found.search(queries[0], 12, rerank=4)
    print(json.dumps({"kernel": index.kernel(), "ids": ids.tolist(), "scores": scores.tolist(),
                      "ids1": ids1.tolist(), "scores1": scores1.tolist()}))
    """
)


KNOWN_KERNELS = {"scalar", "avx2", "avx512_vnni", "neon"}


def widest_kernel() -> str | None:
    """The kernel detection should pick on this machine, from the CPU flags Linux reports; None
    where they cannot be read."""
    machine = platform.machine().lower()
    if machine in {"aarch64", "arm64"}:
        return "neon"
    if machine not in {"x86_64", "amd64"}:
        return "scalar"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), None)
    if flags is None:
        return None
    avx2 = {"avx2", "fma", "f16c"} <= flags
    if avx2 and {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"} <= flags:
        return "avx512_vnni"
    return "avx2" if avx2 else "scalar"


def kernel_in_a_new_process(requested: str | None) -> str:
    env = {name: value for name, value in os.environ.items() if name != "FASTATTR_KERNEL"}
    if requested is not None:
        env["FASTATTR_KERNEL"] = requested
    out = subprocess.run([sys.executable, "-c", "from fastattr import index; print(index.kernel())"],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip()


def test_every_kernel_gives_the_same_answer(tmp_path: Path) -> None:
    vectors = np.random.default_rng(11).standard_normal((777, 72)).astype(np.float32)
    index.build(tmp_path / "k.fai", vectors, np.arange(777))
    results = {}
    reported = {}
    for name in ("scalar", "avx2", "native"):
        env = dict(os.environ, FASTATTR_KERNEL=name)
        out = subprocess.run(
            [sys.executable, "-c", _KERNEL_SCRIPT, str(tmp_path / "k.fai")],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )
        result = json.loads(out.stdout)
        results[result["kernel"]] = result
        reported[name] = result["kernel"]
    assert reported["scalar"] == "scalar" and set(results) <= KNOWN_KERNELS, reported
    if widest_kernel() not in {None, "scalar"}:
        assert len(results) >= 2, f"only one kernel was compared: {reported}"
    reference = results["scalar"]
    for result in results.values():
        assert result["ids"] == reference["ids"] and result["ids1"] == reference["ids1"]
        np.testing.assert_allclose(result["scores"], reference["scores"], rtol=1e-6)
        np.testing.assert_allclose(result["scores1"], reference["scores1"], rtol=1e-5)


def test_kernel_name_and_selection() -> None:
    assert index.kernel() in KNOWN_KERNELS
    assert index.kernel() == kernel_in_a_new_process(os.environ.get("FASTATTR_KERNEL"))
    assert kernel_in_a_new_process("scalar") == "scalar"
    widest = widest_kernel()
    if widest is None:
        pytest.skip("cannot read the CPU flags to check detection")
    assert kernel_in_a_new_process(None) == widest
    assert kernel_in_a_new_process("no-such-kernel") == widest   # an unknown name falls back to detection
    if widest in {"avx2", "avx512_vnni"}:
        assert kernel_in_a_new_process("avx2") == "avx2"


def test_empty_batch_gives_empty_results(random_index) -> None:
    found, _, _ = random_index
    ids, scores = found.search_batch(np.zeros((0, 96), np.float32), 5)
    assert ids.shape == (0, 5) and scores.shape == (0, 5)
    assert ids.dtype == np.uint64 and scores.dtype == np.float32


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_large_index_is_mapped_at_a_huge_page_boundary(tmp_path: Path) -> None:
    # 2 MB alignment is what lets the kernel map the file's page cache with huge pages.
    path = tmp_path / "big.fai"
    index.build(path, random_data(5000, 256, 3), np.arange(5000, dtype=np.uint64))  # ≈ 4 MB
    opened = index.open(path)
    starts = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if fields[-1] == str(path.resolve()):
            starts.append(int(fields[0].split("-")[0], 16))
    assert starts, "the index file is not in /proc/self/maps"
    assert min(starts) % (2 << 20) == 0
    ids, _ = opened.search(random_data(1, 256, 4)[0], 3)
    assert len(ids) == 3
