"""The query-path benchmark, end to end: one command that measures, checks the bars and writes the report.

    python -m bench.query --out results/query        # full: real size, 118,287 and 1,000,000 items
    python -m bench.query --out /tmp/q --quick       # minutes: tiny encoders, 2,000 items

(run from the repository root).

Writes ``results.json``, ``results.md`` and ``breakdown.png`` into ``--out`` (or
``$FASTATTR_BENCH_OUT``). Heavy artefacts (the exported real-size embedder, bundles) are cached in
``--cache`` (default ``$FASTATTR_BENCH_CACHE`` or ``~/.cache/fastattr/bench``).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import Any

from . import world as world_bench
from .bundles import export_realsize, random_bundle, random_vectors
from .realsize import RealSizeSpec, build_embedder
from .reference import EagerReference
from .stages import bare_forward, bare_session, batch_costs, sample_png, sample_prompt, sdk_breakdown, warm_index
from .timing import loadavg, machine_info, time_interleaved

__all__ = ["main", "measure_size", "evaluate_bars"]

PAPER_N = 118_287
FULL_SIZES = (PAPER_N, 1_000_000)


def default_cache() -> Path:
    """Where exported models and bundles are kept between runs."""
    env = os.environ.get("FASTATTR_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fastattr" / "bench"


def _entry(label: str, n_items: int | None, e2e: Any, stages: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    stages = dict(stages or {})
    hook_total = stages.pop("total", None)  # the SDK hook's whole-call time: recorded, not stacked with the stages
    if hook_total is not None:
        extra["stages_total"] = hook_total.to_dict()
    return {"label": label, "n_items": n_items, "end_to_end": e2e.to_dict(),
            "stages": {k: v.to_dict() for k, v in stages.items()}, **extra}


def _ratio(name: str, num: Any, den: Any, how: str) -> dict[str, Any]:
    return {"name": name, "value": round(num.p50_ms / den.p50_ms, 4), "how": how,
            "numerator_p50_ms": num.p50_ms, "denominator_p50_ms": den.p50_ms, "loadavg": loadavg()}


def measure_size(results: dict[str, Any], exported: Any, spec: RealSizeSpec, n_items: int, args: argparse.Namespace) -> None:
    """Measure SDK (fp32, int8), bare ONNX forwards and the eager reference at one index size."""
    import numpy as np

    from fastattr import Attributor
    from fastattr.preprocess import to_rgb_uint8

    name = "tiny" if args.quick else "real"
    bundle = random_bundle(Path(args.cache) / f"bundle-{name}-{n_items}", exported, n_items=n_items)
    threads, k = args.threads, args.k
    image, prompt = sample_png(512), sample_prompt()
    sdk = {"fp32": Attributor.load(bundle, device="cpu", threads=threads, verify="sizes")}
    if "embedder_int8" in exported.info["files"]:
        sdk["int8"] = Attributor.load(bundle, device="cpu", threads=threads, verify="sizes", precision="int8")
    warm_index(sdk["fp32"].bundle, threads)  # the first scan after mmap pays disk reads; a server warms once
    bare = {p: bare_forward(a.bundle, bare_session(a.bundle.file("embedder" if p == "fp32" else f"embedder_{p}"),
                                                   threads=threads), image, prompt) for p, a in sdk.items()}
    features = random_vectors(n_items, exported.dim)
    ref = EagerReference(build_embedder(spec), spec.preprocessing(), exported.tokenizer_path, spec.max_length,
                         features, np.arange(n_items), threads=threads)
    # Sanity: both paths compute the same thing (same weights, same vectors), so their top-k agree.
    ref_ids, _ = ref.query(image, prompt, k=k)
    agreement = {p: len(set(ref_ids.tolist()) & {h.item_id for h in a.query(image, prompt, k=k)}) / k for p, a in sdk.items()}
    fns: dict[str, Any] = {f"sdk_{p}": (lambda a=a: a.query(image, prompt, k=k)) for p, a in sdk.items()}
    fns.update({f"bare_{p}": fn for p, fn in bare.items()})
    # A generator calling the SDK inline hands over pixels, not a file: the same query without decoding.
    array = to_rgb_uint8(image)
    fns["sdk_fp32_array"] = lambda: sdk["fp32"].query(array, prompt, k=k)
    fns["reference"] = lambda: ref.query(image, prompt, k=k)
    print(f"[bench] N={n_items:,}: end-to-end, {args.n} interleaved rounds, load {loadavg()}", flush=True)
    e2e = time_interleaved(fns, n=args.n, warmup=args.warmup, max_seconds=args.max_seconds, block=args.block)
    print(f"[bench] N={n_items:,}: stages from the SDK's timings hook, load {loadavg()}", flush=True)
    for p, attributor in sdk.items():
        stages = sdk_breakdown(attributor, image, prompt, k=k, n=args.n, warmup=args.warmup, max_seconds=args.max_seconds)
        results["configs"].append(_entry(f"SDK {p}, N={n_items:,}", n_items, e2e[f"sdk_{p}"], stages,
                                         top_k_agreement_with_reference=agreement[p]))
        results["configs"].append(_entry(f"bare ONNX forward {p}", n_items, e2e[f"bare_{p}"]))
        results["ratios"].append(_ratio(f"SDK {p} end-to-end / bare ONNX forward {p}, N={n_items:,}",
                                        e2e[f"sdk_{p}"], e2e[f"bare_{p}"], "p50 over p50, interleaved"))
        results["ratios"].append(_ratio(f"reference / SDK {p}, N={n_items:,}", e2e["reference"], e2e[f"sdk_{p}"],
                                        "speed-up: reference p50 over SDK p50, interleaved"))
    print(f"[bench] N={n_items:,}: per-image cost of query_batch, load {loadavg()}", flush=True)
    for p, attributor in sdk.items():
        for size, latency in batch_costs(attributor, image, prompt, sizes=args.batch_sizes, k=k, n=args.n,
                                         max_seconds=args.max_seconds).items():
            how = "query()" if size == 1 else f"query_batch of {size}"
            results["configs"].append(_entry(f"SDK {p} per image, {how}, N={n_items:,}", n_items, latency,
                                             batch_size=size))
    results["configs"].append(_entry(f"SDK fp32, uint8 array input, N={n_items:,}", n_items, e2e["sdk_fp32_array"]))
    results["ratios"].append(_ratio(f"SDK fp32 end-to-end (array input) / bare ONNX forward fp32, N={n_items:,}",
                                    e2e["sdk_fp32_array"], e2e["bare_fp32"], "p50 over p50, interleaved"))
    ref_stages = time_interleaved(ref.stages(image, prompt, k=k), n=args.n, warmup=args.warmup,
                                  max_seconds=args.max_seconds, block=args.block)
    results["configs"].append(_entry(f"reference (torch eager + numpy fp32), N={n_items:,}", n_items,
                                     e2e["reference"], ref_stages))
    del ref, features, sdk, bare
    gc.collect()


def evaluate_bars(results: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """The issue's bars, each with the figure it is judged on (None when not measured).

    ``judged`` rows decide the bar; the others are shown for context. The latency bar is judged
    on the bundle's default fp32 embedder; the speed-up bar on the SDK's CPU variant
    (``precision="int8"``, whose parity the export records) when the bundle has it, else fp32.
    """
    ratios = {r["name"]: r["value"] for r in results["ratios"]}
    sizes = results["settings"]["sizes"]
    parity = (results.get("export") or {}).get("parity") or {}
    bars: list[dict[str, Any]] = []

    def add(name: str, target: str, value: float | None, ok: bool | None, *, judged: bool, real_size: bool = True,
            note: str = "") -> None:
        # --quick runs tiny encoders: their ratios say nothing about the real-size bars.
        met = None if value is None or (quick and real_size) else ok
        bars.append({"name": name, "target": target, "measured": value, "judged": judged, "note": note, "met": met})

    for n in sizes:
        for p in ("fp32", "int8"):
            value = ratios.get(f"SDK {p} end-to-end / bare ONNX forward {p}, N={n:,}")
            if value is not None:
                add(f"SDK {p} end-to-end ≤ 1.2× bare ONNX forward (N={n:,})", "≤ 1.2", value, value <= 1.2,
                    judged=p == "fp32")
    n_bar = PAPER_N if PAPER_N in sizes else sizes[0]
    best = "int8" if f"reference / SDK int8, N={n_bar:,}" in ratios else "fp32"
    for p in ("fp32", "int8"):
        value = ratios.get(f"reference / SDK {p}, N={n_bar:,}")
        if value is not None:
            cos = (parity.get("embedder" if p == "fp32" else f"embedder_{p}") or {}).get("min_cosine")
            add(f"SDK {p} ≥ 2× faster than torch-eager reference (N={n_bar:,}, {results['settings']['threads']} threads)",
                "≥ 2", value, value >= 2.0, judged=p == best,
                note=f"export parity min cosine {cos:.6f} on 64 inputs" if cos is not None else "")
    world = results.get("embedded_world") or {}
    speedup = world.get("speedup")
    add("student ≥ 10,000× faster than teacher per query (embedded world)", "≥ 10000", speedup,
        None if speedup is None else speedup >= 10_000, judged=True, real_size=False)
    return bars


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("FASTATTR_BENCH_OUT"), help="output folder (or $FASTATTR_BENCH_OUT)")
    parser.add_argument("--cache", default=str(default_cache()), help="cache for exported models and bundles")
    parser.add_argument("--quick", action="store_true", help="tiny encoders and 2,000 items: checks the machinery in minutes")
    parser.add_argument("--sizes", default=None, help="comma-separated index sizes (default 118287,1000000; quick: 2000)")
    parser.add_argument("--threads", type=int, default=2, help="threads for ORT, the index scan and torch")
    parser.add_argument("--n", type=int, default=50, help="timed rounds per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--block", type=int, default=10,
                        help="consecutive calls of one configuration per turn of the round-robin")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop a measurement's rounds after this long")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--batch-sizes", default="1,4,16", help="query_batch sizes whose per-image cost is measured")
    world_bench.add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("give --out DIR or set FASTATTR_BENCH_OUT")
    sizes = args.sizes or ("2000" if args.quick else ",".join(str(s) for s in FULL_SIZES))
    args.sizes = [int(s) for s in sizes.split(",") if s.strip()]
    args.batch_sizes = tuple(int(s) for s in args.batch_sizes.split(",") if s.strip())
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report; returns 0 (bars are reported, not enforced)."""
    from .report import write_report

    args = parse_args(argv)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    spec = RealSizeSpec.tiny() if args.quick else RealSizeSpec()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {"threads": args.threads, "k": args.k, "rounds": args.n, "warmup": args.warmup, "block": args.block,
                     "sizes": args.sizes, "quick": args.quick, "embedder": spec.to_json()},
        "configs": [], "ratios": [], "notes": [],
    }
    print(f"[bench] exporting the {'tiny' if args.quick else 'real-size'} embedder (cached in {args.cache})", flush=True)
    exported = export_realsize(Path(args.cache) / f"export-{'tiny' if args.quick else 'real'}", spec)
    results["export"] = {"parity": exported.info.get("parity"), "bytes": exported.onnx_path.stat().st_size,
                         "via": "fastattr.export.export_embedder"}
    for n_items in args.sizes:
        measure_size(results, exported, spec, n_items, args)
    try:
        results["embedded_world"] = world_bench.measure(results, args)
    except Exception as exc:  # noqa: BLE001 - a world failure must not lose the real-size figures above
        results["embedded_world"] = {"error": f"{type(exc).__name__}: {exc}"}
    results["notes"] += [
        "Real-size embedder: random weights; ViT-B/16 224 px (ViTConfig defaults) read at CLS + CLIP ViT-B/32 text "
        "tower (CLIPTextConfig defaults, pooled) + MLP 1280→768 (3 hidden layers, ReLU, dropout 0.1), L2-normalized, "
        "built from fastattr.student's own modules. Text tokenizer: all-MiniLM-L6-v2's WordPiece tokenizer.json "
        "(CLIP's BPE cannot be downloaded here) with CLIP vocab_size set to 30,522 to match.",
        "Index items are seeded random unit vectors; the reference scores the same vectors in fp32.",
        "Timings on a machine shared with other jobs: each figure carries os.getloadavg() at its end; ratios are "
        "measured round-robin so load changes hit both sides alike.",
    ]
    results["bars"] = evaluate_bars(results, args.quick)
    results["loadavg_end"] = loadavg()
    paths = write_report(results, args.out)
    print((Path(paths["markdown"])).read_text())
    print(f"[bench] wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
