"""Renders the index benchmark's results as a markdown table with the issue's targets."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render(results: dict[str, dict[str, Any]], machine: dict[str, Any]) -> str:
    lines = [
        f"index benchmark: {machine.get('n_items'):,} x {machine.get('dim')} clustered float32, "
        f"kernel={machine.get('kernel')}, cpus={machine.get('cpus')}, "
        f"load avg before/after={machine.get('load_before')}/{machine.get('load_after')}",
        "",
        "| method | p50 single (ms) | CPU ms / single | batch-64 qps | recall@10 | recall@100 | file (MB) | open (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results.values():
        size = None if row.get("file_bytes") is None else row["file_bytes"] / 1e6
        lines.append(
            f"| {row['name']} | {_fmt(row.get('p50_ms'), '.2f')} | {_fmt(row.get('cpu_ms'), '.1f')} | "
            f"{_fmt(row.get('batch_qps'), '.0f')} | "
            f"{_fmt(row.get('recall10'), '.4f')} | {_fmt(row.get('recall100'), '.4f')} | {_fmt(size, '.0f')} | "
            f"{_fmt(row.get('open_ms'), '.3f')} |"
        )
    bandwidth = machine.get("bandwidth_gbs")
    ours = results.get("fastattr")
    if bandwidth and ours:
        floor_ms = ours["bytes_scanned"] / (bandwidth * 1e9) * 1e3
        lines += ["", f"read bandwidth ({machine.get('cpus')} threads): {bandwidth:.1f} GB/s; "
                      f"fastattr scans {ours['bytes_scanned'] / 1e6:.0f} MB per query -> floor {floor_ms:.2f} ms; "
                      f"p50 = {ours['p50_ms'] / floor_ms:.2f} x floor"]
        checks = [("recall@10 >= 0.995", ours.get("recall10"), lambda v: v >= 0.995)]
        sq8, flat = results.get("faiss_sq8"), results.get("faiss_flat")
        checks.append(("p50 <= 1.3 x bandwidth floor", ours["p50_ms"] / floor_ms, lambda v: v <= 1.3))
        if sq8:
            checks.append(("p50 <= 0.5 x faiss SQ8", ours["p50_ms"] / sq8["p50_ms"], lambda v: v <= 0.5))
        if flat:
            checks.append(("batch qps >= 4 x faiss FlatIP", ours["batch_qps"] / flat["batch_qps"], lambda v: v >= 4))
        checks.append(("open <= 1 ms", ours.get("open_ms"), lambda v: v <= 1.0))
        lines += ["", "| target | measured | met |", "|---|---:|:---:|"]
        for label, value, ok in checks:
            lines.append(f"| {label} | {_fmt(value, '.3f')} | {'yes' if value is not None and ok(value) else 'NO'} |")
    return "\n".join(lines)
