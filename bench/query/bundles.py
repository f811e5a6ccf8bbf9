"""Benchmark bundles: the real-size embedder exported through export/, with random unit item vectors.

Embedding 118,287 or 1,000,000 items with a ViT-B/16 on two cores would take hours and measure
nothing the query path depends on, so the index holds seeded random unit vectors (the brief
allows it). The embedder is exported with ``fastattr.export.export_embedder`` (parity-checked fp32
and int8 graphs) and the bundle is written by the public ``fastattr.bundle_build.build_bundle`` with
``vectors=`` (streamed in blocks, so 1,000,000 × 768 never sits in memory at once); its manifest
records that the item vectors were supplied. The reference path regenerates the same vectors as fp32.

Example:
    >>> exported = export_realsize("cache/export", RealSizeSpec.tiny())  # doctest: +SKIP
    >>> bundle = random_bundle("cache/b2000", exported, n_items=2000)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .realsize import RealSizeSpec, build_embedder, minilm_tokenizer_path, weights_digest

__all__ = ["export_realsize", "random_unit_chunks", "random_vectors", "placeholder_items", "random_bundle"]

_CHUNK_ROWS = 65_536
_SPEC_FILE = "realsize_spec.json"


def export_realsize(out_dir: str | os.PathLike[str], spec: RealSizeSpec, *, int8: bool = True,
                    n_parity: int = 64) -> Any:
    """Build the random-weight embedder and export it with ``fastattr.export.export_embedder``.

    Reuses ``out_dir`` when it already holds an export of the same spec and weights (exporting
    ViT-B/16 + CLIP text and running the 64-input parity check costs minutes on two cores).

    Returns:
        The ``fastattr.export.ExportedEmbedder`` (with ``info["parity"]`` as measured).
    """
    from fastattr._atomic import write_json
    from fastattr.export import export_embedder, load_export

    out = Path(out_dir)
    model = build_embedder(spec)
    stamp = {"spec": spec.to_json(), "weights_sha256": weights_digest(model)}
    marker = out / _SPEC_FILE
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        exported = load_export(out)
        if not int8 or "embedder_int8" in exported.info["files"]:
            return exported
    embedder_spec = {**spec.preprocessing(), "tokenizer": str(minilm_tokenizer_path()),
                     "max_length": spec.max_length, "dim": spec.out_dim}
    exported = export_embedder(model, embedder_spec, out, int8=int8, n_parity=n_parity,
                               source={"realsize": spec.to_json(), "weights": "random (seeded)"})
    write_json(marker, stamp)
    return exported


def random_unit_chunks(n_items: int, dim: int, *, seed: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """Seeded random unit rows in chunks: yields (first row, float32 (rows, dim)); deterministic.

    Example:
        >>> [(s, c.shape) for s, c in random_unit_chunks(3, 4)]
        [(0, (3, 4))]
    """
    for start in range(0, n_items, _CHUNK_ROWS):
        rows = min(_CHUNK_ROWS, n_items - start)
        rng = np.random.default_rng([seed, start])
        chunk = rng.standard_normal((rows, dim), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        yield start, chunk


def random_vectors(n_items: int, dim: int, *, seed: int = 0) -> np.ndarray:
    """All of :func:`random_unit_chunks` as one fp32 (n_items, dim) array (the reference's features).

    Example:
        >>> v = random_vectors(5, 8)
        >>> np.allclose(np.linalg.norm(v, axis=1), 1.0)
        True
    """
    out = np.empty((n_items, dim), np.float32)
    for start, chunk in random_unit_chunks(n_items, dim, seed=seed):
        out[start:start + len(chunk)] = chunk
    return out


def placeholder_items(n_items: int) -> Any:
    """A ``fastattr.world.Dataset`` of ``n_items`` items with ids 0..n-1 and placeholder captions.

    Its images are 1×1 black pixels: with supplied vectors and no thumbnails ``build_bundle``
    never looks at them, and ``np.zeros`` costs no memory until written.

    Example:
        >>> len(placeholder_items(3)), placeholder_items(3).captions[2]
        (3, 'training item 2')
    """
    from fastattr.world import Dataset

    return Dataset(images=np.zeros((n_items, 1, 1, 3), np.uint8), captions=[f"training item {i}" for i in range(n_items)],
                   item_ids=np.arange(n_items, dtype=np.uint64), attributes=[{} for _ in range(n_items)])


def random_bundle(out_dir: str | os.PathLike[str], exported: Any, *, n_items: int, seed: int = 0,
                  extra_variants: dict[str, Path] | None = None) -> Path:
    """Write a bundle whose index holds ``n_items`` seeded random unit vectors; atomic, cached.

    Item ids are 0..n_items-1; captions are placeholders. ``extra_variants`` adds embedder files
    by role (e.g. ``{"embedder_fp16": path}``). Reuses ``out_dir`` if it already holds a bundle of
    the same size, seed, variants and embedder file, built this way.
    """
    from fastattr.bundle import MANIFEST
    from fastattr.bundle_build import build_bundle

    variants = {k: Path(v) for k, v in (extra_variants or {}).items()}
    out = Path(out_dir)
    stamp = {"n_items": int(n_items), "seed": int(seed), "embedder_bytes": exported.onnx_path.stat().st_size,
             "dim": int(exported.dim), "variants": sorted({**exported.variants(), **variants}),
             "via": "fastattr.bundle_build.build_bundle(vectors=)"}
    if (out / MANIFEST).is_file():
        manifest = json.loads((out / MANIFEST).read_text())
        if manifest.get("provenance", {}).get("bench_random_bundle") == stamp:
            return out
    blocks = (chunk for _, chunk in random_unit_chunks(n_items, exported.dim, seed=seed))
    return build_bundle(out, embedder=exported.root, dataset=placeholder_items(n_items), vectors=blocks,
                        variants=variants, thumbnail_size=0,
                        provenance={"bench_random_bundle": stamp, "note": "bench/query: seeded random unit item vectors"})
