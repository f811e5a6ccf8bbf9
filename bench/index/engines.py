"""The searchers the index benchmark compares, behind one small interface (rows of the dataset)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def _median_seconds(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


class Engine:
    """Build/open once, then search(query, k) -> rows (k,) and search_batch(queries, k) -> rows (B, k)."""

    name = ""
    file_bytes: int | None = None
    open_ms: float | None = None
    bytes_scanned: int | None = None

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.search_batch(query[None, :], k)[0]

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Fastattr(Engine):
    def __init__(self, data: dict[str, Any], threads: int | None = None) -> None:
        from fastattr import index

        self.name = "fastattr int8" + ("" if threads is None else f" (threads={threads})")
        self.threads = threads
        path = Path(data["cache"]) / f"fastattr-{len(data['vectors'])}.fai"
        if not path.exists():
            started = time.perf_counter()
            index.build(path, data["vectors"], np.arange(len(data["vectors"]), dtype=np.uint64))
            print(f"\n[bench] built {path.name} in {time.perf_counter() - started:.0f} s")
        self.open_ms = 1e3 * _median_seconds(lambda: index.open(path), 50)
        self.index = index.open(path)
        self.index.warmup()
        self.file_bytes = path.stat().st_size
        n = len(self.index)
        self.bytes_scanned = n * (-(-self.index.dim // 64) * 64) + n * 8  # codes + scale + code sum

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        ids, _ = self.index.search_batch(queries, k, threads=self.threads)
        return ids.astype(np.int64)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(query, k, threads=self.threads)[0].astype(np.int64)


class NumpyExact(Engine):
    name = "numpy exact fp32"

    def __init__(self, data: dict[str, Any]) -> None:
        self.vectors = data["vectors"]
        self.file_bytes = Path(data["vectors_path"]).stat().st_size
        self.open_ms = 1e3 * _median_seconds(lambda: np.load(data["vectors_path"], mmap_mode="r"), 20)

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        scores = queries @ self.vectors.T
        rows = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, rows, axis=1), axis=1)
        return np.take_along_axis(rows, order, axis=1)


class Faiss(Engine):
    def __init__(self, data: dict[str, Any], kind: str) -> None:
        import faiss

        self.faiss = faiss
        vectors = data["vectors"]
        dim = vectors.shape[1]
        if kind == "flat":
            self.name = "faiss IndexFlatIP"
            built = faiss.IndexFlatIP(dim)
        else:
            self.name = "faiss SQ8 (QT_8bit)"
            built = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            built.train(vectors[:: max(1, len(vectors) // 100000)])
        for start in range(0, len(vectors), 262144):
            built.add(vectors[start : start + 262144])
        path = Path(data["cache"]) / f"faiss-{kind}.index"
        faiss.write_index(built, str(path))
        del built
        self.file_bytes = path.stat().st_size
        started = time.perf_counter()
        self.index = faiss.read_index(str(path))
        self.open_ms = 1e3 * (time.perf_counter() - started)
        path.unlink()

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(np.ascontiguousarray(queries), k)[1]

    def close(self) -> None:
        del self.index


class USearchExact(Engine):
    def __init__(self, data: dict[str, Any], dtype: str) -> None:
        from usearch.index import MetricKind, search

        self.metric, self.search_fn = MetricKind.IP, search
        self.threads = os.cpu_count() or 1
        self.name = f"usearch exact {dtype}"
        self.dtype = dtype
        if dtype == "i8":
            # usearch's own f32 -> i8 conversion: scale by 127 and truncate
            self.vectors = (data["vectors"] * 127).astype(np.int8)
            path = Path(data["cache"]) / "usearch-i8.npy"
            np.save(path, self.vectors)
        else:
            self.vectors = data["vectors"]
            path = Path(data["vectors_path"])
        self.file_bytes = path.stat().st_size
        self.open_ms = 1e3 * _median_seconds(lambda: np.load(path, mmap_mode="r"), 20)

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        if self.dtype == "i8":
            queries = (queries * 127).astype(np.int8)
        matches = self.search_fn(self.vectors, queries, k, self.metric, exact=True, threads=self.threads)
        return np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), k)

    def close(self) -> None:
        del self.vectors


FACTORIES = {
    "fastattr": lambda data: Fastattr(data),
    "fastattr_threads1": lambda data: Fastattr(data, threads=1),
    "numpy": NumpyExact,
    "faiss_flat": lambda data: Faiss(data, "flat"),
    "faiss_sq8": lambda data: Faiss(data, "sq8"),
    "usearch_f32": lambda data: USearchExact(data, "f32"),
    "usearch_i8": lambda data: USearchExact(data, "i8"),
}
