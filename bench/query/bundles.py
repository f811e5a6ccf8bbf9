"""Benchmark bundles: the real-size embedder exported through export/, with random unit item vectors.

Embedding 118,287 or 1,000,000 items with a ViT-B/16 on two cores would take hours and measure
nothing the query path depends on, so the index holds seeded random unit vectors (the brief
allows it) and the bundle is assembled with the SDK's own pieces: ``fastattr.export``'s
``export_embedder`` (parity-checked fp32 and int8 graphs), ``fastattr.index``'s writer and
``fastattr.bundle.write_manifest``. The reference path regenerates the same vectors as fp32.

Example:
    >>> exported = export_realsize("cache/export", RealSizeSpec.tiny())  # doctest: +SKIP
    >>> bundle = random_bundle("cache/b2000", exported, n_items=2000)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .realsize import RealSizeSpec, build_embedder, minilm_tokenizer_path, weights_digest

__all__ = ["export_realsize", "random_unit_chunks", "random_vectors", "random_bundle"]

_CHUNK_ROWS = 65_536
VARIANT_NAMES = {"embedder_fp16": "embedder.fp16.onnx", "embedder_int8": "embedder.int8.onnx"}
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


def _link_or_copy(src: Path, dst: Path) -> None:
    # Several bundles share one 600 MB embedder: a hard link costs no disk and no copy time.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def random_bundle(out_dir: str | os.PathLike[str], exported: Any, *, n_items: int, seed: int = 0,
                  extra_variants: dict[str, Path] | None = None) -> Path:
    """Write a bundle whose index holds ``n_items`` seeded random unit vectors; atomic, cached.

    Item ids are 0..n_items-1; captions are placeholders. ``extra_variants`` adds embedder files
    by role (e.g. ``{"embedder_fp16": path}``). Reuses ``out_dir`` if it already holds a bundle of
    the same size, seed, variants and embedder file.
    """
    variants = {**exported.variants(), **{k: Path(v) for k, v in (extra_variants or {}).items()}}
    from tqdm.auto import tqdm

    from fastattr import index as index_module
    from fastattr._atomic import atomic_dir, atomic_open
    from fastattr.bundle import MANIFEST, write_manifest

    out = Path(out_dir)
    onnx_bytes = exported.onnx_path.stat().st_size
    stamp = {"n_items": int(n_items), "seed": int(seed), "embedder_bytes": onnx_bytes, "dim": int(exported.dim),
             "variants": sorted(variants)}
    if (out / MANIFEST).is_file():
        manifest = json.loads((out / MANIFEST).read_text())
        if manifest.get("provenance", {}).get("bench_random_bundle") == stamp:
            return out
    with atomic_dir(out) as tmp:
        roles = {"embedder": "embedder.onnx", "tokenizer": "tokenizer.json", "index": "index.fai", "items": "items.jsonl"}
        _link_or_copy(exported.onnx_path, tmp / "embedder.onnx")
        _link_or_copy(exported.tokenizer_path, tmp / "tokenizer.json")
        for role, path in variants.items():
            name = VARIANT_NAMES.get(role, path.name)
            _link_or_copy(path, tmp / name)
            roles[role] = name
        with index_module.IndexWriter(str(tmp / "index.fai"), exported.dim) as writer:
            bar = tqdm(total=n_items, desc=f"index of {n_items:,} random vectors", unit="item")
            for start, chunk in random_unit_chunks(n_items, exported.dim, seed=seed):
                writer.append(chunk, np.arange(start, start + len(chunk), dtype=np.uint64))
                bar.update(len(chunk))
            bar.close()
        with atomic_open(tmp / "items.jsonl", "w") as handle:
            for row in range(n_items):
                handle.write(json.dumps({"item_id": row, "caption": f"training item {row}", "uri": None}) + "\n")
        write_manifest(tmp, roles=roles, dim=exported.dim, n_items=n_items, spec=exported.spec,
                       provenance={"bench_random_bundle": stamp, "export": exported.info.get("source", {})},
                       export=exported.info.get("parity", {}))
    return out
