"""Benchmark: fastattr's int8 index against numpy, faiss and usearch at 1M x 512 (see README.md here)."""

from __future__ import annotations

import gc
import itertools
import os
import time
from typing import Any

import numpy as np
import pytest
from conftest import BATCH, DIM, MACHINE, N_ITEMS, RESULTS
from engines import FACTORIES

from fastattr import _core, index

SINGLE_ROUNDS = int(os.environ.get("FASTATTR_BENCH_ROUNDS", "30"))


def test_machine(dataset: dict[str, Any]) -> None:
    """Read bandwidth of this machine: stream 1 GB of the dataset with every CPU, best of 5."""
    vectors = dataset["vectors"]
    sample = vectors[: max(1, min(len(vectors), (1 << 30) // (4 * DIM)))]
    MACHINE.update(
        n_items=N_ITEMS, dim=DIM, kernel=index.kernel(), cpus=_core.available_cpus(),
        load_before=tuple(round(x, 2) for x in os.getloadavg()),
        bandwidth_gbs=_core.read_bandwidth(sample, 0, 5) / 1e9,
    )
    print(f"\n[bench] kernel={MACHINE['kernel']} bandwidth={MACHINE['bandwidth_gbs']:.1f} GB/s")


@pytest.mark.parametrize("method", list(FACTORIES))
def test_method(benchmark: Any, method: str, dataset: dict[str, Any]) -> None:
    engine = FACTORIES[method](dataset)
    queries, truth = dataset["queries"], dataset["truth"]
    cycle = itertools.cycle(queries)
    for _ in range(3):
        engine.search(next(cycle), 10)  # first calls pay page faults and thread start-up
    benchmark.extra_info["method"] = engine.name
    benchmark.pedantic(lambda: engine.search(next(cycle), 10), rounds=SINGLE_ROUNDS, iterations=1)
    # CPU seconds (all threads) per single query: what the search costs whatever the machine's load.
    cpu_started = time.process_time()
    for _ in range(10):
        engine.search(next(cycle), 10)
    cpu_ms = (time.process_time() - cpu_started) / 10 * 1e3
    row: dict[str, Any] = {"name": engine.name, "p50_ms": benchmark.stats.stats.median * 1e3, "cpu_ms": cpu_ms,
                           "file_bytes": engine.file_bytes, "open_ms": engine.open_ms,
                           "bytes_scanned": engine.bytes_scanned}
    if method != "fastattr_threads1":  # same answers as "fastattr"; only its latency differs
        batch = queries[:BATCH]
        times = []
        for _ in range(3):
            started = time.perf_counter()
            engine.search_batch(batch, 10)
            times.append(time.perf_counter() - started)
        row["batch_qps"] = BATCH / float(np.median(times))
        found = np.concatenate([engine.search_batch(queries[s : s + BATCH], 100) for s in range(0, len(queries), BATCH)])
        row["recall10"] = float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth)]))
        row["recall100"] = float(np.mean([len(set(f) & set(t)) / 100 for f, t in zip(found, truth)]))
    RESULTS[method] = row
    MACHINE["load_after"] = tuple(round(x, 2) for x in os.getloadavg())
    engine.close()
    del engine
    gc.collect()
