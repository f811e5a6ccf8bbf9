"""The static HTML report: the query image and its top-k training items, images embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._atomic import write_text
from .results import Attribution

__all__ = ["render_html", "write_report", "bundle_thumbnails"]

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 24px; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 4px; } .sub { color: #666; font-size: 13px; margin-bottom: 18px; }
.query { display: flex; gap: 18px; align-items: flex-start; padding: 14px; background: #fff; border: 1px solid #ddd; border-radius: 8px; margin-bottom: 18px; }
.query img { width: 192px; height: 192px; }
img { image-rendering: pixelated; object-fit: contain; background: #eee; border-radius: 4px; }
.prompt { font-size: 16px; margin: 4px 0 10px; } .meta { font-size: 12px; color: #666; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 8px; }
.card img { width: 100%; aspect-ratio: 1 / 1; }
.rank { font-weight: 600; } .score { float: right; font-variant-numeric: tabular-nums; }
.bar { height: 4px; background: #dde; border-radius: 2px; margin: 4px 0 6px; } .bar > div { height: 4px; background: #4a6cf7; border-radius: 2px; }
.caption { font-size: 12px; line-height: 1.35; } .id { font-size: 11px; color: #888; word-break: break-all; }
h2 { font-size: 16px; margin: 22px 0 8px; } table { border-collapse: collapse; background: #fff; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: right; font-variant-numeric: tabular-nums; } td:first-child, th:first-child { text-align: left; }
.missing { display: flex; align-items: center; justify-content: center; aspect-ratio: 1 / 1; background: #eee; color: #999; font-size: 12px; border-radius: 4px; }
"""


def _png_data_uri(rgb: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def bundle_thumbnails(bundle: Any, results: Sequence[Attribution]) -> dict[int, np.ndarray]:
    """Thumbnails of ``results`` from a bundle's thumbnails.npy, else from local files named by uri.

    Example:
        >>> thumbs = bundle_thumbnails(attributor.bundle, hits)  # doctest: +SKIP
    """
    from .preprocess import to_rgb_uint8

    out: dict[int, np.ndarray] = {}
    table = None
    if bundle is not None and bundle.has("thumbnails"):
        table = np.load(bundle.file("thumbnails"), mmap_mode="r", allow_pickle=False)
    items = bundle.items() if table is not None else None
    for hit in results:
        if table is not None and items is not None:
            out[hit.item_id] = np.asarray(table[items.row(hit.item_id)])
        elif hit.uri and os.path.isfile(hit.uri):
            out[hit.item_id] = to_rgb_uint8(hit.uri)
    return out


def render_html(
    image: np.ndarray,
    prompt: str,
    results: Sequence[Attribution],
    *,
    thumbnails: Mapping[int, np.ndarray] | None = None,
    title: str = "fastattr attribution report",
    meta: Mapping[str, Any] | None = None,
    tables: Mapping[str, Sequence[Sequence[Any]]] | None = None,
) -> str:
    """A self-contained HTML page (no external files): query image, prompt, ranked training items.

    Args:
        image: the generated image, uint8 (H, W, 3).
        prompt: the prompt that generated it.
        results: attributions, best first.
        thumbnails: item id → uint8 (h, w, 3) thumbnail; items without one show a placeholder.
        title: page title.
        meta: extra facts shown under the prompt (bundle, device, latency, ...).
        tables: titled tables shown below the results; the first row of each is its header.

    Example:
        >>> page = render_html(np.zeros((8, 8, 3), np.uint8), "a red square", [])
        >>> page.startswith("<!DOCTYPE html>")
        True
    """
    thumbnails = thumbnails or {}
    top = max([hit.score for hit in results] + [1e-9])
    cards = []
    for hit in results:
        thumb = thumbnails.get(hit.item_id)
        picture = (f'<img alt="training item {hit.item_id}" src="{_png_data_uri(thumb)}">' if thumb is not None
                   else '<div class="missing">no thumbnail</div>')
        width = max(0.0, min(1.0, hit.score / top)) * 100 if top > 0 else 0.0
        uri = f'<div class="id">{html.escape(hit.uri)}</div>' if hit.uri else ""
        cards.append(
            f'<div class="card">{picture}<div><span class="rank">#{hit.rank}</span>'
            f'<span class="score">{hit.score:.4f}</span></div><div class="bar"><div style="width:{width:.1f}%"></div></div>'
            f'<div class="caption">{html.escape(hit.caption)}</div><div class="id">item {hit.item_id}</div>{uri}</div>'
        )
    sections = []
    for name, rows in (tables or {}).items():
        head, *body = [[html.escape(str(cell)) for cell in row] for row in rows] or [[]]
        sections.append(
            f"<h2>{html.escape(name)}</h2><table><tr>{''.join(f'<th>{c}</th>' for c in head)}</tr>"
            + "".join(f"<tr>{''.join(f'<td>{c}</td>' for c in row)}</tr>" for row in body) + "</table>"
        )
    facts = " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in (meta or {}).items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><div class=\"sub\">Training images ranked by estimated influence on the "
        "generated image (cosine in the student space; higher means more influential).</div>"
        f"<div class=\"query\"><img alt=\"query image\" src=\"{_png_data_uri(image)}\"><div>"
        f"<div class=\"meta\">prompt</div><div class=\"prompt\">{html.escape(prompt)}</div>"
        f"<div class=\"meta\">{facts}</div></div></div>"
        f"<div class=\"grid\">{''.join(cards)}</div>{''.join(sections)}</body></html>\n"
    )


def write_report(path: str | os.PathLike[str], image: np.ndarray, prompt: str, results: Sequence[Attribution],
                 **kwargs: Any) -> Path:
    """Render with :func:`render_html` and write the page atomically; returns its path.

    Example:
        >>> write_report("report.html", image, prompt, hits, thumbnails=thumbs)  # doctest: +SKIP
    """
    target = Path(path)
    write_text(target, render_html(image, prompt, results, **kwargs))
    return target
