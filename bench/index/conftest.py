"""Shared data for the index benchmark: clustered vectors, queries, exact fp32 ground truth, results table."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

N_ITEMS = int(os.environ.get("FASTATTR_BENCH_N", "1000000"))
DIM = 512
N_QUERIES = 200
N_CLUSTERS = 1000
BATCH = 64
CACHE = Path(os.environ.get("FASTATTR_BENCH_DIR", Path(__file__).resolve().parents[2] / "build" / "bench-index"))

RESULTS: dict[str, dict[str, Any]] = {}
MACHINE: dict[str, Any] = {}


def _clustered(rng: np.random.Generator, centers: np.ndarray, out: np.ndarray) -> None:
    """Fill `out` in place, in chunks: a cluster center plus noise, L2-normalised (no 2 GB temporaries)."""
    for start in range(0, len(out), 65536):
        chunk = out[start : start + 65536]
        labels = rng.integers(0, len(centers), len(chunk))
        chunk[:] = rng.standard_normal(chunk.shape, dtype=np.float32)
        chunk *= 0.6
        chunk += centers[labels]
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)


def _exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact fp32 top-k rows by inner product, computed block by block."""
    best_rows = np.zeros((len(queries), 0), np.int64)
    best_scores = np.zeros((len(queries), 0), np.float32)
    for start in range(0, len(vectors), 131072):
        scores = queries @ vectors[start : start + 131072].T
        rows = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best_rows = np.concatenate([best_rows, rows + start], axis=1)
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, rows, axis=1)], axis=1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
    return best_rows


@pytest.fixture(scope="session")
def dataset() -> dict[str, Any]:
    """N_ITEMS x 512 clustered unit vectors (cached as .npy under CACHE), queries and ground truth."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tag = f"{N_ITEMS}x{DIM}"
    vectors_path, truth_path = CACHE / f"vectors-{tag}.npy", CACHE / f"truth-{tag}.npz"
    rng = np.random.default_rng(2024)
    centers = rng.standard_normal((N_CLUSTERS, DIM)).astype(np.float32) / np.sqrt(DIM) * 1.5
    queries = np.empty((N_QUERIES, DIM), np.float32)
    _clustered(np.random.default_rng(7), centers, queries)
    if not vectors_path.exists():
        started = time.perf_counter()
        vectors = np.lib.format.open_memmap(str(vectors_path) + ".tmp.npy", "w+", np.float32, (N_ITEMS, DIM))
        _clustered(rng, centers, vectors)
        vectors.flush()
        del vectors
        os.replace(str(vectors_path) + ".tmp.npy", vectors_path)
        print(f"\n[bench] generated {tag} clustered vectors in {time.perf_counter() - started:.0f} s")
    vectors = np.load(vectors_path)  # in RAM: numpy and the peers search this array directly
    if truth_path.exists():
        truth = np.load(truth_path)["rows"]
    else:
        truth = _exact_top(vectors, queries, 100)
        np.savez(truth_path, rows=truth)
    return {"vectors": vectors, "vectors_path": vectors_path, "queries": queries, "truth": truth, "cache": CACHE}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    from table import render  # bench/index/table.py

    text = render(RESULTS, MACHINE)
    terminalreporter.write_line("")
    for line in text.splitlines():
        terminalreporter.write_line(line)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "results.md").write_text(text + "\n")
    (CACHE / "results.json").write_text(json.dumps({"results": RESULTS, "machine": MACHINE}, indent=2, default=str))
