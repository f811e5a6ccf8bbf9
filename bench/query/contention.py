"""Why the index search is slower inside a query than alone: the forward's threads and the scan's.

    python -m bench.query.contention --items 1000000 --out results/contention     # real size
    python -m bench.query.contention --items 2000 --quick --out /tmp/c            # minutes

(run from the repository root). One process, one bundle of seeded random item vectors, the
real-size random-weight embedder of bench/query (cached like its runs). Round-robin, each round
runs once:

- ``search alone``: the bundle's index searched with the query vector, nothing before it;
- ``forward, then search`` with ONNX Runtime's idle threads spinning (its default) and with
  spinning off: the search is timed alone, right after the forward returned;
- the SDK's whole ``Attributor.query`` with each session setting, with its per-stage timings.

Writes ``contention.json`` and ``contention.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

from .bundles import export_realsize, random_bundle
from .realsize import RealSizeSpec
from .run import default_cache
from .stages import bare_forward, sample_png, sample_prompt, warm_index
from .timing import loadavg, machine_info, summarize

__all__ = ["main", "measure"]


def _attributor(bundle_path: Path, threads: int, spinning: bool) -> Any:
    from fastattr import Attributor
    from fastattr.onnx_embedder import make_session

    attributor = Attributor.load(bundle_path, device="cpu", threads=threads, verify="sizes")
    # The same bundle and index; only the session's spinning differs.
    attributor._session = make_session(attributor.bundle.file("embedder"), device="cpu", threads=threads,
                                       spinning=spinning)
    return attributor


def measure(bundle_path: Path, *, threads: int, rounds: int, k: int = 10) -> dict[str, Any]:
    """Per-round timings of each configuration, summarized (p50/p95 ms)."""
    image, prompt = sample_png(512), sample_prompt()
    sdk = {spin: _attributor(bundle_path, threads, spin) for spin in (True, False)}
    warm_index(sdk[True].bundle, threads)
    index = sdk[True]._index
    vector = sdk[True].embed([image], [prompt])
    forwards = {spin: bare_forward(a.bundle, a._session, image, prompt) for spin, a in sdk.items()}

    def search() -> float:
        t0 = time.perf_counter()
        index.search_batch(vector, k, threads=threads)
        return time.perf_counter() - t0

    def forward_then_search(forward: Callable[[], Any]) -> tuple[float, float]:
        t0 = time.perf_counter()
        forward()
        return time.perf_counter() - t0, search()

    seconds: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        seconds.setdefault(name, []).append(value)

    for warm in range(3 + rounds):
        timed = warm >= 3
        s = search()
        for spin in (True, False):
            label = "spinning" if spin else "no spinning"
            f, after = forward_then_search(forwards[spin])
            timings: dict[str, float] = {}
            sdk[spin].query(image, prompt, k=k, timings=timings)
            if timed:
                add(f"forward ({label})", f)
                add(f"search right after the forward ({label})", after)
                for stage, value in timings.items():
                    add(f"SDK query {stage} ({label})", value)
        if timed:
            add("search alone", s)
    return {name: summarize(values).to_dict() for name, values in seconds.items()}


def _markdown(results: dict[str, Any]) -> str:
    lines = [f"# Search inside a query vs alone (N={results['items']:,}, threads {results['threads']})", "",
             f"Machine: {results['machine'].get('cpu', '?')}, {results['machine'].get('nproc', '?')} cores; "
             f"load average before {results['load_before']}, after {results['load_after']}; "
             f"{results['rounds']} rounds, round-robin.", "",
             "| measurement | p50 ms | p99 ms |", "|---|---|---|"]
    for name, lat in results["timings"].items():
        lines.append(f"| {name} | {lat['p50_ms']:.2f} | {lat['p99_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache", default=str(default_cache()))
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="tiny encoders (checks the machinery)")
    args = parser.parse_args(argv)
    spec = RealSizeSpec.tiny() if args.quick else RealSizeSpec()
    name = "tiny" if args.quick else "real"
    exported = export_realsize(Path(args.cache) / f"export-{name}", spec)
    bundle = random_bundle(Path(args.cache) / f"bundle-{name}-{args.items}", exported, n_items=args.items)
    before = loadavg()
    timings = measure(bundle, threads=args.threads, rounds=args.rounds)
    results = {"items": args.items, "threads": args.threads, "rounds": args.rounds, "machine": machine_info(),
               "load_before": before, "load_after": loadavg(), "timings": timings}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from fastattr._atomic import write_json, write_text

    write_json(out / "contention.json", results)
    write_text(out / "contention.md", _markdown(results))
    print(_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
