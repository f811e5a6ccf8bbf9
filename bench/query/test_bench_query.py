"""pytest-benchmark suite of the query path: SDK (with its timings hook), bare forward, reference, and the full report.

    python -m pytest bench/query -q                      # quick: tiny encoders, 2,000 items
    FASTATTR_BENCH_FULL=1 python -m pytest bench/query   # real size at 118,287 items; bars enforced

``FASTATTR_BENCH_OUT`` names the folder the report goes to (default: pytest's tmp dir);
``FASTATTR_BENCH_CACHE`` the cache of exported models and bundles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .bundles import export_realsize, random_bundle, random_vectors
from .realsize import RealSizeSpec, build_embedder
from .reference import EagerReference
from .run import PAPER_N, default_cache, main
from .stages import SDK_STAGES, bare_forward, batch_costs, bare_session, sample_png, sample_prompt, sdk_breakdown

FULL = os.environ.get("FASTATTR_BENCH_FULL", "") not in ("", "0")
N_ITEMS = PAPER_N if FULL else 2_000
THREADS = 2
K = 10


@pytest.fixture(scope="module")
def spec() -> RealSizeSpec:
    return RealSizeSpec() if FULL else RealSizeSpec.tiny()


@pytest.fixture(scope="module")
def cache() -> Path:
    path = default_cache()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def exported(spec: RealSizeSpec, cache: Path) -> Any:
    return export_realsize(cache / f"export-{'real' if FULL else 'tiny'}", spec)


@pytest.fixture(scope="module")
def attributor(exported: Any, cache: Path) -> Any:
    from fastattr import Attributor

    bundle = random_bundle(cache / f"bundle-{'real' if FULL else 'tiny'}-{N_ITEMS}", exported, n_items=N_ITEMS)
    return Attributor.load(bundle, device="cpu", threads=THREADS, verify="sizes")


@pytest.fixture(scope="module")
def query() -> tuple[bytes, str]:
    return sample_png(512), sample_prompt()


@pytest.fixture(scope="module")
def reference(spec: RealSizeSpec, exported: Any) -> EagerReference:
    return EagerReference(build_embedder(spec), spec.preprocessing(), exported.tokenizer_path, spec.max_length,
                          random_vectors(N_ITEMS, exported.dim), np.arange(N_ITEMS), threads=THREADS)


def test_sdk_query_end_to_end(benchmark: Any, attributor: Any, query: tuple[bytes, str]) -> None:
    image, prompt = query
    hits = benchmark(attributor.query, image, prompt, k=K)
    assert [h.rank for h in hits] == list(range(1, K + 1))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_sdk_query_with_timings(benchmark: Any, attributor: Any, query: tuple[bytes, str]) -> None:
    image, prompt = query
    timings: dict[str, float] = {}
    hits = benchmark(attributor.query, image, prompt, k=K, timings=timings)
    assert hits == attributor.query(image, prompt, k=K)  # timing a query does not change its answer
    assert set(timings) == {*SDK_STAGES, "total"} and min(timings.values()) >= 0.0


def test_sdk_breakdown(attributor: Any, query: tuple[bytes, str]) -> None:
    image, prompt = query
    stages = sdk_breakdown(attributor, image, prompt, k=K, n=5, warmup=1)
    assert list(stages) == [*SDK_STAGES, "total"] and all(s.n == 5 for s in stages.values())
    assert stages["forward"].p50_ms > 0 and stages["total"].p50_ms >= stages["forward"].p50_ms


def test_query_batch_per_image(attributor: Any, query: tuple[bytes, str]) -> None:
    image, prompt = query
    costs = batch_costs(attributor, image, prompt, sizes=(1, 4), k=K, n=3)
    assert sorted(costs) == [1, 4] and all(c.n == 3 and c.p50_ms > 0 for c in costs.values())
    # What the batch cost measures is the same answer as single queries, four times.
    assert attributor.query_batch([image] * 4, [prompt] * 4, k=K) == [attributor.query(image, prompt, k=K)] * 4


def test_bare_onnx_forward(benchmark: Any, attributor: Any, query: tuple[bytes, str]) -> None:
    image, prompt = query
    session = bare_session(attributor.bundle.file("embedder"), threads=THREADS)
    (vectors,) = benchmark(bare_forward(attributor.bundle, session, image, prompt))
    # The bare session and the SDK embed identically: same file, same input.
    np.testing.assert_allclose(vectors, attributor.embed(image, prompt), atol=1e-5)


def test_reference_query(benchmark: Any, reference: EagerReference, attributor: Any, query: tuple[bytes, str]) -> None:
    image, prompt = query
    ids, _ = benchmark(reference.query, image, prompt, k=K)
    # Same weights and the same item vectors: the SDK (int8 scan + fp16 re-rank) finds the same items.
    sdk_ids = {h.item_id for h in attributor.query(image, prompt, k=K)}
    assert len(sdk_ids & set(ids.tolist())) >= K - 1


def test_report_and_bars(tmp_path: Path) -> None:
    """The README command, in-process: writes the JSON, markdown and PNG; enforces the bars in full mode."""
    out = Path(os.environ.get("FASTATTR_BENCH_OUT") or tmp_path)
    args = ["--out", str(out), "--threads", str(THREADS)]
    args += ["--sizes", str(PAPER_N), "--n", "30"] if FULL else ["--quick", "--n", "5", "--warmup", "1"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert (out / "breakdown.png").read_bytes()[:4] == b"\x89PNG"
    assert "| configuration" in (out / "results.md").read_text()
    labels = [c["label"] for c in results["configs"]]
    assert any(label.startswith("SDK fp32") for label in labels) and any("reference" in label for label in labels)
    for config in results["configs"]:
        e2e = config["end_to_end"]
        assert 0 < e2e["p50_ms"] <= e2e["p99_ms"], config["label"]
    batches = sorted(c["batch_size"] for c in results["configs"] if c["label"].startswith("SDK fp32 per image"))
    assert batches == [1, 4, 16]
    sdk = next(c for c in results["configs"] if c["label"].startswith("SDK fp32, N="))
    assert list(sdk["stages"]) == sorted(SDK_STAGES) and sdk["stages_total"]["p50_ms"] > 0  # JSON keys are sorted
    if not FULL:  # the bench's bundles come from the public build_bundle(vectors=...)
        manifest = json.loads((default_cache() / f"bundle-tiny-{N_ITEMS}" / "manifest.json").read_text())
        assert manifest["provenance"]["item_vectors"]["source"] == "supplied"
    if FULL:
        failed = [b["name"] for b in results["bars"] if b["judged"] and b["met"] is False]
        assert not failed, f"bars missed: {failed}"
