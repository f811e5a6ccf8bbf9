"""`fastattr index build`: embed every training item with the exported ONNX embedder and write a bundle.

The bundle is built in a temporary folder and renamed into place when complete
(``fastattr._atomic.atomic_dir``), so an interrupted build leaves nothing that loads.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from ._atomic import atomic_dir, atomic_open, check_replaceable
from .bundle import open_bundle, write_manifest
from .data.layouts import add_dataset_arguments, dataset_from_args
from .errors import CheckpointError, DatasetError, InputError
from .preprocess import PreprocessSpec, Tokenizer, normalize, resize_rgb

__all__ = ["build_bundle", "embed_items", "register"]


def _session(model_path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def embed_items(
    model_path: str | os.PathLike[str],
    spec: PreprocessSpec,
    tokenizer_path: str | os.PathLike[str],
    images: np.ndarray,
    captions: list[str],
    *,
    batch_size: int = 64,
    threads: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Embed (image, caption) rows with an ONNX embedder → float32 (N, D), the SDK's exact path.

    Example:
        >>> vectors = embed_items("embedder.onnx", spec, "tokenizer.json", images, captions)  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    session = _session(Path(model_path), threads)
    tokenizer = Tokenizer.from_file(tokenizer_path, max_length=spec.max_length)
    out = []
    bar = tqdm(total=len(images), desc="embedding items", unit="item", disable=not progress)
    for start in range(0, len(images), batch_size):
        rgb = np.stack([resize_rgb(np.asarray(img), spec.size, spec.resize) for img in images[start:start + batch_size]])
        input_ids, attention_mask = tokenizer(captions[start:start + batch_size])
        feed = {"pixel_values": normalize(rgb, spec.mean, spec.std), "input_ids": input_ids, "attention_mask": attention_mask}
        out.append(session.run(None, feed)[0].astype(np.float32))
        bar.update(len(rgb))
    bar.close()
    vectors = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    if not np.all(np.isfinite(vectors)):
        raise CheckpointError(f"{model_path} produced NaN/inf embeddings; re-export the student")
    return vectors


def _thumbnail(rgb: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    if max(rgb.shape[:2]) <= side:
        return rgb
    img = Image.fromarray(rgb)
    img.thumbnail((side, side), Image.Resampling.BICUBIC)
    return np.asarray(img)


_NORM_TOLERANCE = 1e-3  # the embedder L2-normalizes in fp32; float32 rows of other origin may drift a little


def _check_chunk(chunk: Any, start: int, dim: int, where: str) -> np.ndarray:
    """One block of supplied item vectors, validated: float32, 2-D with ``dim`` columns, finite, unit rows."""
    if not isinstance(chunk, np.ndarray):
        raise InputError(f"{where} must be a numpy float32 array, got {type(chunk).__name__}")
    if chunk.dtype != np.float32:
        raise InputError(f"{where} has dtype {chunk.dtype}; pass float32 (e.g. vectors.astype(np.float32))")
    if chunk.ndim != 2 or chunk.shape[1] != dim:
        raise InputError(f"{where} has shape {chunk.shape}; expected (rows, {dim}) to match the embedder's output dim {dim}")
    finite = np.isfinite(chunk).all(axis=1)
    if not finite.all():
        row = start + int(np.argmin(finite))
        raise InputError(f"{where}: row {row} holds NaN or infinite values; every item vector must be finite")
    norms = np.linalg.norm(chunk, axis=1)
    off = np.abs(norms - 1.0) > _NORM_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise InputError(
            f"{where}: row {start + row} has L2 norm {norms[row]:.6g}; item vectors must be L2-normalized like the "
            "embedder's output (divide each row by its norm)"
        )
    return chunk


def _supplied_chunks(vectors: Any, n_items: int, dim: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, block) of caller-supplied vectors; InputError as soon as a block is wrong."""
    if isinstance(vectors, np.ndarray):
        if vectors.ndim != 2 or vectors.shape[0] != n_items:
            raise InputError(
                f"vectors has shape {vectors.shape}; expected ({n_items}, {dim}): one row per dataset item, in dataset order"
            )
        blocks: Iterable[Any] = (vectors[i:i + 65_536] for i in range(0, n_items, 65_536))
    elif isinstance(vectors, (str, bytes)) or not isinstance(vectors, Iterable):
        raise InputError(
            f"vectors must be a float32 ({n_items}, {dim}) array or an iterable of float32 (rows, {dim}) blocks, "
            f"got {type(vectors).__name__}"
        )
    else:
        blocks = vectors
    streamed = not isinstance(vectors, np.ndarray)
    start = 0
    for block in blocks:
        block = _check_chunk(block, start, dim, f"vectors block at row {start}" if streamed else "vectors")
        if start + len(block) > n_items:
            raise InputError(f"vectors supply more than {n_items} rows; the dataset has {n_items} items")
        yield start, block
        start += len(block)
    if start != n_items:
        raise InputError(f"vectors supply {start} rows; the dataset has {n_items} items (one row per item, in order)")


def build_bundle(
    out: str | os.PathLike[str],
    *,
    embedder: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | Any,
    batch_size: int = 64,
    thumbnail_size: int = 64,
    evaluation: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    threads: int | None = None,
    progress: bool = True,
    vectors: np.ndarray | Iterable[np.ndarray] | None = None,
    variants: Mapping[str, str | os.PathLike[str]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a complete bundle for ``dataset`` with the exported ``embedder``; atomic.

    An existing folder at ``out`` is replaced (in one atomic exchange) only if it is a bundle;
    anything else there is refused unless ``overwrite``.

    Args:
        out: the bundle folder to create (an existing one is replaced only when the new one is done).
        embedder: folder from ``fastattr export`` (embedder.onnx, tokenizer.json, export.json).
        dataset: dataset folder (``fastattr world make``) or a loaded ``fastattr.world.Dataset``.
        batch_size: items per ONNX Runtime call.
        thumbnail_size: longest side of the stored thumbnails for reports; 0 stores none.
        evaluation: figures to record (e.g. the student's mAP table).
        provenance: anything else worth recording (teacher, student, world settings).
        threads: ONNX Runtime threads.
        vectors: precomputed item vectors to index instead of embedding every item with the
            ONNX model: float32 (N, dim) with one L2-normalized row per dataset item in dataset
            order (N = the dataset's item count, dim = the embedder's output), or an iterable of
            float32 (rows, dim) blocks in that order (for indexes too big to hold in memory).
            They must come from the same embedder, or queries will rank nonsense. The manifest's
            ``provenance.item_vectors`` records whether the vectors were embedded or supplied.
        variants: extra embedder files by role (e.g. ``{"embedder_fp16": "model.fp16.onnx"}``)
            beyond those in the export folder; each role must start with "embedder_".

    Returns:
        The bundle folder, verified by opening it.

    Raises:
        InputError: ``vectors`` has the wrong dtype, shape or row count, non-finite or
            non-unit rows; or a ``variants`` entry has a bad role or no file.

    Example:
        >>> build_bundle("bundles/shapes", embedder="runs/export", dataset="runs/world")  # doctest: +SKIP
        >>> build_bundle("bundles/big", embedder="runs/export", dataset=big, vectors=precomputed)  # doctest: +SKIP
    """
    from . import index as index_module
    from .export import load_export
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_replaceable(Path(out), "manifest.json", overwrite=overwrite, what="bundle")   # before any work
    from .data import open_dataset

    exported = load_export(embedder)
    data = open_dataset(dataset)
    n_items = len(data)
    if n_items == 0:
        raise DatasetError("the dataset has no items; nothing to index")
    captions = list(data.captions)
    ids = np.asarray(data.item_ids, dtype=np.uint64)
    uris = list(data.uris) if getattr(data, "uris", None) else [None] * n_items
    extra = {role: (path, path.name) for role, path in exported.variants().items()}
    for role, path in (variants or {}).items():
        if not isinstance(role, str) or not role.startswith("embedder_") or not Path(path).is_file():
            raise InputError(f"variants[{role!r}] = {str(path)!r}: roles must start with 'embedder_' and name an existing file")
        extra[role] = (Path(path), role.replace("_", ".", 1) + ".onnx")  # embedder_fp16 -> embedder.fp16.onnx
    if vectors is None:
        embedded = embed_items(exported.onnx_path, exported.spec, exported.tokenizer_path, data.images, captions,
                               batch_size=batch_size, threads=threads, progress=progress)
        if embedded.shape != (n_items, exported.dim):
            raise CheckpointError(f"embedder returned {embedded.shape}, expected ({n_items}, {exported.dim})")
        item_vectors = {"source": "embedder"}
    else:
        # Validate the array's shape now, before anything is written; blocks are checked as they stream.
        chunks = _supplied_chunks(vectors, n_items, exported.dim)
        item_vectors = {"source": "supplied", "note": "passed to build_bundle(vectors=...), not embedded here",
                        "rows": n_items, "dim": exported.dim}
        if isinstance(vectors, np.ndarray):
            chunks = iter(list(chunks))
    with atomic_dir(out, marker="manifest.json", what="bundle", overwrite=overwrite) as tmp:
        roles = {"embedder": "embedder.onnx", "tokenizer": "tokenizer.json", "index": "index.fai", "items": "items.jsonl"}
        shutil.copyfile(exported.onnx_path, tmp / "embedder.onnx")
        shutil.copyfile(exported.tokenizer_path, tmp / "tokenizer.json")
        for role, (path, name) in extra.items():
            shutil.copyfile(path, tmp / name)
            roles[role] = name
        if vectors is None:
            index_module.build(str(tmp / "index.fai"), embedded, ids)
        else:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_items, desc="indexing supplied vectors", unit="item", disable=not progress)
            with index_module.IndexWriter(str(tmp / "index.fai"), exported.dim) as writer:
                for start, chunk in chunks:
                    writer.append(chunk, ids[start:start + len(chunk)])
                    bar.update(len(chunk))
            bar.close()
        with atomic_open(tmp / "items.jsonl", "w") as handle:
            for row in range(n_items):
                record = {"item_id": int(ids[row]), "caption": captions[row], "uri": uris[row],
                          "attributes": data.attributes[row] if data.attributes else {}}
                handle.write(json.dumps(record, sort_keys=True) + "\n")
        if thumbnail_size > 0:
            first = _thumbnail(np.asarray(data.images[0]), thumbnail_size)
            thumbs = np.lib.format.open_memmap(tmp / "thumbnails.npy", mode="w+", dtype=np.uint8,
                                               shape=(n_items, *first.shape))
            for row in range(n_items):
                thumbs[row] = _thumbnail(np.asarray(data.images[row]), thumbnail_size)
            thumbs.flush()
            del thumbs
            roles["thumbnails"] = "thumbnails.npy"
        from . import __version__

        write_manifest(
            tmp, roles=roles, dim=exported.dim, n_items=n_items, spec=exported.spec,
            provenance={
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "fastattr_version": __version__,
                "embedder": exported.info.get("source", {}),
                "item_vectors": item_vectors,
                "dataset": {"path": str(getattr(data, "path", "") or ""), **dict(getattr(data, "meta", {}) or {})},
                **dict(provenance or {}),
            },
            export={"parity": exported.info.get("parity", {})},
            evaluation=dict(evaluation or {}),
        )
    return open_bundle(out, verify="sizes").root


def _run_build(args: argparse.Namespace) -> int:
    check_replaceable(Path(args.out), "manifest.json", overwrite=args.overwrite, what="bundle")
    evaluation = None
    if args.eval:
        try:
            evaluation = json.loads(Path(args.eval).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read evaluation figures from {args.eval!r}: {exc}") from exc
    root = build_bundle(args.out, embedder=args.embedder, dataset=dataset_from_args(args), batch_size=args.batch_size,
                        thumbnail_size=args.thumbnail_size, evaluation=evaluation, threads=args.threads,
                        overwrite=args.overwrite)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    size_mb = sum(f["bytes"] for f in manifest["files"].values()) / 1e6
    print(f"wrote bundle {root}: {manifest['n_items']} items, dim {manifest['dim']}, {size_mb:.1f} MB")
    return 0


def register(subparsers: Any) -> None:
    """Add `fastattr index build` to the CLI."""
    group = subparsers.add_parser("index", help="build the attribution bundle (index of training items)")
    sub = group.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    group.set_defaults(handler=lambda args: (group.print_help(), 2)[1])
    build = sub.add_parser(
        "build", help="embed every training item and write a bundle",
        description="Embed every training item with the exported ONNX embedder, write the native index, "
        "items.jsonl, thumbnails and manifest.json into a bundle folder (atomically).",
    )
    build.add_argument("--embedder", required=True, help="folder written by `fastattr export`")
    add_dataset_arguments(build)
    build.add_argument("--out", required=True, help="bundle folder to write")
    build.add_argument("--batch-size", type=int, default=64)
    build.add_argument("--thumbnail-size", type=int, default=64, help="longest thumbnail side; 0 = no thumbnails")
    build.add_argument("--eval", help="JSON file of evaluation figures to record in the manifest")
    build.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    build.add_argument("--overwrite", action="store_true",
                       help="replace whatever is at --out (by default only an existing bundle is replaced)")
    build.set_defaults(handler=_run_build)
