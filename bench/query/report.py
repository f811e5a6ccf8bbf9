"""Benchmark outputs: results JSON, a markdown table and a PNG of the latency breakdown (matplotlib Agg)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["write_report", "markdown", "plot_breakdown"]

_STAGE_COLORS = {
    "decode": "#8dd3c7", "preprocess": "#80b1d3", "resize_normalize": "#80b1d3", "decode_preprocess": "#e78ac3",
    "tokenize": "#fdb462",
    "forward": "#fb8072", "search": "#bebada", "assemble": "#b3de69",
}


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


# Pipeline order (results.json is written with sorted keys, so the order is restored here).
# "resize_normalize" is the older name of "preprocess", kept so earlier results.json files still render.
_STAGE_ORDER = ("decode", "preprocess", "resize_normalize", "decode_preprocess", "tokenize", "forward", "search",
                "assemble")


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per measured configuration: label, n_items, e2e latency, stage p50s in pipeline order."""
    rows = []
    for entry in results.get("configs", []):
        stages = entry.get("stages", {})
        order = sorted(stages, key=lambda s: (_STAGE_ORDER.index(s) if s in _STAGE_ORDER else len(_STAGE_ORDER), s))
        rows.append({
            "label": entry["label"], "n_items": entry.get("n_items"), "e2e": entry.get("end_to_end"),
            "stages": {name: stages[name]["p50_ms"] for name in order},
        })
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown: machine, latency table with breakdown, ratios and bars.

    Example:
        >>> "| configuration" in markdown({"machine": {}, "configs": [], "bars": []})
        True
    """
    machine = results.get("machine", {})
    lines = [
        "# Query-path benchmark",
        "",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('nproc', '?')} cores, onnxruntime "
        f"{machine.get('onnxruntime', '?')}, torch {machine.get('torch', '–')}, index kernel "
        f"`{machine.get('index_kernel')}`; threads per query {results.get('settings', {}).get('threads')}; "
        f"load average at start {machine.get('loadavg')}, at end {results.get('loadavg_end')}.",
        "",
    ]
    present = {name for row in _rows(results) for name in row["stages"]}
    stage_names = [s for s in _STAGE_ORDER if s in present] + sorted(present - set(_STAGE_ORDER))
    header = ["configuration", "items", "p50 ms", "p99 ms", "n", *[f"{s} ms" for s in stage_names], "load (1 min)"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in _rows(results):
        e2e = row["e2e"] or {}
        load = e2e.get("loadavg") or [None]
        cells = [row["label"], f"{row['n_items']:,}" if row["n_items"] else "–", _ms(e2e.get("p50_ms")),
                 _ms(e2e.get("p99_ms")), str(e2e.get("n", "–")),
                 *[_ms(row["stages"].get(s)) for s in stage_names], str(load[0])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "SDK stage columns are medians, over repeated real `Attributor.query` calls, of the seconds its "
              "public `timings` hook reports per stage (`preprocess` = resize + normalize); the reference's stages "
              "are its own methods timed alone (`decode_preprocess` = decode + resize + normalize). Stage medians "
              "need not add up to the end-to-end p50, which is measured in separate, interleaved calls.", ""]
    if results.get("ratios"):
        lines += ["## Ratios (measured interleaved, same run)", "", "| ratio | value | how |", "|---|---|---|"]
        for ratio in results["ratios"]:
            lines.append(f"| {ratio['name']} | {ratio['value']:.3g}× | {ratio['how']} |")
        lines.append("")
    if results.get("bars"):
        lines += ["## Bars", "", "| bar | target | measured | met | decides the bar | note |", "|---|---|---|---|---|---|"]
        for bar in results["bars"]:
            measured = "–" if bar.get("measured") is None else f"{bar['measured']:.4g}"
            met = {True: "yes", False: "**no**", None: "not judged" if bar.get("measured") is not None else "not measured"}[bar.get("met")]
            judged = "yes" if bar.get("judged") else "context"
            lines.append(f"| {bar['name']} | {bar['target']} | {measured} | {met} | {judged} | {bar.get('note', '')} |")
        lines.append("")
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"


def plot_breakdown(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Stacked horizontal bars: p50 of each stage per configuration, end-to-end p50 marked.

    One panel per configuration, each with its own scale: a 200 ms real-size query and a
    1 ms embedded-world query share no useful axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastattr._atomic import atomic_open

    rows = [row for row in _rows(results) if row["stages"]]
    if not rows:
        raise ValueError("no configuration with a stage breakdown to plot")
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.1 + 0.9 * len(rows)), squeeze=False)
    seen: set[str] = set()
    for ax, row in zip(axes[:, 0], rows):
        left = 0.0
        for name, value in row["stages"].items():
            label = None if name in seen else name
            seen.add(name)
            ax.barh([0], [value], left=left, color=_STAGE_COLORS.get(name, "#d9d9d9"), edgecolor="white", label=label)
            left += value
        e2e = (row["e2e"] or {}).get("p50_ms")
        if e2e is not None:
            ax.axvline(e2e, color="black", linestyle="--", linewidth=1)
            ax.set_xlim(0, max(e2e, left) * 1.08)
        ax.set_yticks([0])
        ax.set_yticklabels([f"{row['label']}\n(e2e p50 {_ms(e2e)} ms)"], fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel("milliseconds (p50 per stage; dashed: end-to-end p50)")
    handles, labels = [], []
    for ax in axes[:, 0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.append(h)
            labels.append(lab)
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    target = Path(path)
    with atomic_open(target, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
    return target


def write_report(results: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``breakdown.png`` into ``out_dir`` (atomically each)."""
    from fastattr._atomic import write_json, write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "plot": out / "breakdown.png"}
    write_json(paths["json"], results)
    write_text(paths["markdown"], markdown(results))
    plot_breakdown(results, paths["plot"])
    return paths
