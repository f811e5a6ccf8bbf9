"""Concurrency: many threads (and processes) querying one Attributor and one mapped index must
get exactly the serial answers.

Usage:
    python scripts/reliability/storm.py [--bundle BUNDLE] [--threads 8] [--queries 10000]
        [--processes 4] [--index-rows 200000] [--dim 64] [--json OUT]

Without ``--bundle`` it builds the test suite's tiny stand-in bundle (tests/_export_kit.py). Each
query i is fixed by i alone (a random image at the bundle's input size, one of several prompts, k
and an exclude list drawn from i), so every run asks the same questions. The serial answers come
first; then ``--threads`` threads take queries from a shared counter on the same ``Attributor``
(and on one bare ``fastattr.index`` of random vectors), and ``--processes`` processes open that
index file (one page cache, shared) and answer their share. Every answer is compared with the
serial one bit for bit: ids and float32 scores. Prints one JSON summary.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

PROMPTS = ["a red square on grey", "two blue circles", "a green triangle at the top left",
           "a small yellow star, centred", "", "x" * 500]

CHILD = """
import sys, numpy as np
from fastattr import index
found = index.open(sys.argv[1])
queries = np.load(sys.argv[2])
lo, hi, k = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ids = np.zeros((hi - lo, k), np.uint64); scores = np.zeros((hi - lo, k), np.float32)
for i in range(lo, hi):
    ids[i - lo], scores[i - lo] = found.search(queries[i], k=k, exclude=[int(i % 97)])
np.save(sys.argv[6], ids); np.save(sys.argv[7], scores)
"""


def _query_args(i: int, side: tuple[int, int], n_items: int) -> tuple[np.ndarray, str, int, list[int]]:
    rng = np.random.default_rng(i)
    image = rng.integers(0, 256, (*side, 3), dtype=np.uint8)
    prompt = PROMPTS[i % len(PROMPTS)] or "a plain picture"
    k = int(rng.integers(1, min(20, n_items) + 1))
    exclude = [int(x) for x in rng.integers(0, 2 * n_items, int(rng.integers(0, 4)))]
    return image, prompt, k, exclude


def _storm(n: int, threads: int, answer: Callable[[int], tuple[np.ndarray, np.ndarray]],
           serial: list[tuple[np.ndarray, np.ndarray]]) -> tuple[int, float, list[str]]:
    """Answers queries 0..n-1 on `threads` threads; returns (mismatches, seconds, first errors)."""
    counter = itertools.count()
    lock = threading.Lock()
    mismatches = [0]
    errors: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                i = next(counter)
            if i >= n:
                return
            try:
                ids, scores = answer(i)
                same = np.array_equal(ids, serial[i][0]) and np.array_equal(scores.view(np.uint32),
                                                                             serial[i][1].view(np.uint32))
            except Exception as exc:  # a storm must report, not die, on the first failure
                same = False
                errors.append(f"query {i}: {type(exc).__name__}: {exc}")
            if not same:
                with lock:
                    mismatches[0] += 1

    start = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return mismatches[0], time.perf_counter() - start, errors[:5]


def attributor_storm(bundle: Path, n: int, threads: int) -> dict:
    from fastattr import Attributor

    att = Attributor.load(bundle)
    side = tuple(att.bundle.spec.size)
    n_items = len(att)

    def answer(i: int) -> tuple[np.ndarray, np.ndarray]:
        image, prompt, k, exclude = _query_args(i, side, n_items)
        hits = att.query(image, prompt, k=k, exclude=exclude)
        return np.array([h.item_id for h in hits], np.uint64), np.array([h.score for h in hits], np.float32)

    start = time.perf_counter()
    serial = [answer(i) for i in range(n)]
    serial_s = time.perf_counter() - start
    mismatches, storm_s, errors = _storm(n, threads, answer, serial)
    return {"target": "Attributor", "bundle": str(bundle), "queries": n, "threads": threads,
            "mismatches": mismatches, "serial_s": round(serial_s, 2), "storm_s": round(storm_s, 2), "errors": errors}


def index_storm(work: Path, n: int, threads: int, processes: int, rows: int, dim: int, k: int = 10) -> list[dict]:
    from fastattr import index

    rng = np.random.default_rng(1)
    path = work / "storm.fai"
    index.build(path, rng.standard_normal((rows, dim)).astype(np.float32), np.arange(rows, dtype=np.uint64) * 3)
    queries = rng.standard_normal((n, dim)).astype(np.float32)
    found = index.open(path)

    def answer(i: int) -> tuple[np.ndarray, np.ndarray]:
        return found.search(queries[i], k=k, exclude=[int(i % 97)])

    start = time.perf_counter()
    serial = [answer(i) for i in range(n)]
    serial_s = time.perf_counter() - start
    mismatches, storm_s, errors = _storm(n, threads, answer, serial)
    out = [{"target": f"index ({rows} x {dim})", "queries": n, "threads": threads, "mismatches": mismatches,
            "serial_s": round(serial_s, 2), "storm_s": round(storm_s, 2), "errors": errors}]

    np.save(work / "queries.npy", queries)
    bounds = np.linspace(0, n, processes + 1).astype(int)
    start = time.perf_counter()
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(work / "queries.npy"), str(lo), str(hi),
                                  str(k), str(work / f"ids-{p}.npy"), str(work / f"scores-{p}.npy")],
                                 stderr=subprocess.PIPE, text=True)
                for p, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]
    failures = [c.communicate()[1][-500:] for c in children if c.wait() != 0]
    processes_s = time.perf_counter() - start
    mismatches = 0
    if not failures:
        for p, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            ids, scores = np.load(work / f"ids-{p}.npy"), np.load(work / f"scores-{p}.npy")
            for i in range(lo, hi):
                mismatches += not (np.array_equal(ids[i - lo], serial[i][0])
                                   and np.array_equal(scores[i - lo].view(np.uint32), serial[i][1].view(np.uint32)))
    out.append({"target": f"index ({rows} x {dim}), shared by processes", "queries": n, "processes": processes,
                "mismatches": mismatches if not failures else n, "seconds": round(processes_s, 2),
                "errors": failures[:2]})
    return out


def _tiny_bundle() -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    import _export_kit

    return _export_kit.bundle()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle to query (default: the tests' tiny stand-in bundle)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--index-rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    bundle = args.bundle or _tiny_bundle()
    with tempfile.TemporaryDirectory(prefix="fastattr-storm-") as work:
        results = [attributor_storm(bundle, args.queries, args.threads),
                   *index_storm(Path(work), args.queries, args.threads, args.processes, args.index_rows, args.dim)]
    summary = {"cpus": os.cpu_count(), "results": results,
               "mismatches": sum(r["mismatches"] for r in results)}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if summary["mismatches"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
