"""`fastattr bundle build`: embed every training item with the exported ONNX embedder and write a bundle.

:func:`build_bundle` runs the steps below in order, each a function of its own:
:func:`check_output` (refuse a folder that is not a bundle, before any work),
:func:`embedder_files` (the ONNX files and tokenizer to copy, with extra variants checked),
:func:`item_vectors` (embed every item, or validate vectors the caller supplied),
:func:`write_index`, :func:`write_items`, :func:`write_thumbnails` and
:func:`write_bundle_manifest` (last: a folder without a manifest is not a bundle).

The bundle is built in a temporary folder and renamed into place when complete
(``fastattr._atomic.atomic_dir``), so an interrupted build leaves nothing that loads.
``fastattr index build`` is the same command under its former name.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from ._atomic import atomic_dir, atomic_open, check_replaceable
from ._progress import make_progress
from .bundle import open_bundle, write_manifest
from .data.layouts import add_dataset_arguments, dataset_from_args
from .errors import CheckpointError, DatasetError, InputError
from .onnx_embedder import embed_items

__all__ = [
    "ItemVectors",
    "build_bundle",
    "check_output",
    "embedder_files",
    "item_vectors",
    "write_index",
    "write_items",
    "write_thumbnails",
    "write_bundle_manifest",
    "register",
]


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


# ----------------------------------------------------------------------------- the steps of build_bundle


def check_output(out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Step 1: refuse ``out`` when it holds something other than a bundle (unless ``overwrite``), before any work.

    Raises:
        InputError: ``out`` is a file, or a non-empty folder without manifest.json, and ``overwrite`` is False.

    Example:
        >>> check_output("bundles/shapes")  # doctest: +SKIP
        PosixPath('bundles/shapes')
    """
    path = Path(out)
    check_replaceable(path, "manifest.json", overwrite=overwrite, what="bundle")
    return path


def embedder_files(exported: Any, variants: Mapping[str, str | os.PathLike[str]] | None = None) -> dict[str, tuple[Path, str]]:
    """Step 2: role → (source file, name in the bundle) for the embedder, its tokenizer and every variant.

    The export folder's own variants come first; ``variants`` adds more (each role must start
    with "embedder_"; ``embedder_fp16`` is stored as ``embedder.fp16.onnx``).

    Raises:
        InputError: a ``variants`` role does not start with "embedder_" or names no file.

    Example:
        >>> embedder_files(load_export("runs/export"))["embedder"]  # doctest: +SKIP
        (PosixPath('runs/export/embedder.onnx'), 'embedder.onnx')
    """
    files = {"embedder": (Path(exported.onnx_path), "embedder.onnx"),
             "tokenizer": (Path(exported.tokenizer_path), "tokenizer.json")}
    files.update({role: (path, path.name) for role, path in exported.variants().items()})
    for role, path in (variants or {}).items():
        if not isinstance(role, str) or not role.startswith("embedder_") or not Path(path).is_file():
            raise InputError(f"variants[{role!r}] = {str(path)!r}: roles must start with 'embedder_' and name an existing file")
        files[role] = (Path(path), role.replace("_", ".", 1) + ".onnx")  # embedder_fp16 -> embedder.fp16.onnx
    return files


@dataclass
class ItemVectors:
    """What the index will hold: the embedded rows, or the caller's blocks (validated as they stream).

    Attributes:
        provenance: the manifest's ``provenance.item_vectors`` ({"source": "embedder"} or "supplied").
        embedded: float32 (N, dim) rows computed by the embedder, or None.
        blocks: (first row, float32 block) pairs of supplied vectors, or None.
    """

    provenance: dict[str, Any]
    embedded: np.ndarray | None = None
    blocks: Iterator[tuple[int, np.ndarray]] = field(default_factory=lambda: iter(()))


def item_vectors(
    exported: Any,
    data: Any,
    vectors: np.ndarray | Iterable[np.ndarray] | None = None,
    *,
    batch_size: int = 64,
    threads: int | None = None,
    progress: bool = True,
) -> ItemVectors:
    """Step 3: embed every item of ``data`` with the exported embedder, or check the supplied ``vectors``.

    A supplied array is checked whole here, before anything is written; supplied blocks are
    checked one by one as :func:`write_index` consumes them.

    Raises:
        InputError: ``vectors`` has the wrong type, dtype, shape or row count, or non-finite or
            non-unit rows.
        CheckpointError: the embedder returned the wrong shape or non-finite values.

    Example:
        >>> vectors = item_vectors(load_export("runs/export"), open_dataset("runs/world"))  # doctest: +SKIP
        >>> vectors.embedded.shape  # doctest: +SKIP
        (2500, 64)
    """
    n_items = len(data)
    if vectors is None:
        embedded = embed_items(exported.onnx_path, exported.spec, exported.tokenizer_path, data.images,
                               list(data.captions), batch_size=batch_size, threads=threads, progress=progress)
        if embedded.shape != (n_items, exported.dim):
            raise CheckpointError(f"embedder returned {embedded.shape}, expected ({n_items}, {exported.dim})")
        return ItemVectors({"source": "embedder"}, embedded=embedded)
    chunks = _supplied_chunks(vectors, n_items, exported.dim)
    if isinstance(vectors, np.ndarray):
        chunks = iter(list(chunks))
    return ItemVectors({"source": "supplied", "note": "passed to build_bundle(vectors=...), not embedded here",
                        "rows": n_items, "dim": exported.dim}, blocks=chunks)


def write_index(path: str | os.PathLike[str], vectors: ItemVectors, ids: np.ndarray, *, dim: int,
                progress: bool = True) -> None:
    """Step 4: the native index of ``vectors`` with external ids ``ids`` (row i ↔ ids[i]).

    Example:
        >>> write_index(tmp / "index.fai", item_vectors(exported, data), ids, dim=exported.dim)  # doctest: +SKIP
    """
    from . import index as index_module

    if vectors.embedded is not None:
        index_module.build(str(path), vectors.embedded, ids)
        return
    with make_progress(total=len(ids), desc="indexing supplied vectors", unit="item",
                       disable=not progress) as bar:
        with index_module.IndexWriter(str(path), dim) as writer:
            for start, chunk in vectors.blocks:
                writer.append(chunk, ids[start:start + len(chunk)])
                bar.update(len(chunk))


def write_items(path: str | os.PathLike[str], data: Any) -> None:
    """Step 5: items.jsonl, one ``{"attributes", "caption", "item_id", "uri"}`` line per item in index order.

    Example:
        >>> write_items(tmp / "items.jsonl", open_dataset("runs/world"))  # doctest: +SKIP
    """
    n_items = len(data)
    ids = np.asarray(data.item_ids, dtype=np.uint64)
    captions = list(data.captions)
    uris = list(data.uris) if getattr(data, "uris", None) else [None] * n_items
    with atomic_open(Path(path), "w") as handle:
        for row in range(n_items):
            record = {"item_id": int(ids[row]), "caption": captions[row], "uri": uris[row],
                      "attributes": data.attributes[row] if data.attributes else {}}
            handle.write(json.dumps(record, sort_keys=True) + "\n")


def write_thumbnails(path: str | os.PathLike[str], images: Any, side: int) -> None:
    """Step 6: thumbnails.npy, uint8 (N, h, w, 3), each image shrunk to at most ``side`` pixels per side.

    Written through a memory map, so N thumbnails never sit in memory at once.

    Example:
        >>> write_thumbnails(tmp / "thumbnails.npy", data.images, 64)  # doctest: +SKIP
    """
    first = _thumbnail(np.asarray(images[0]), side)
    thumbs = np.lib.format.open_memmap(Path(path), mode="w+", dtype=np.uint8, shape=(len(images), *first.shape))
    for row in range(len(images)):
        thumbs[row] = _thumbnail(np.asarray(images[row]), side)
    thumbs.flush()
    del thumbs


def write_bundle_manifest(
    root: str | os.PathLike[str],
    *,
    roles: Mapping[str, str],
    exported: Any,
    data: Any,
    vectors: ItemVectors,
    evaluation: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Step 7 (last): manifest.json over the files of ``roles``, with the build's provenance.

    Example:
        >>> write_bundle_manifest(tmp, roles=roles, exported=exported, data=data, vectors=vectors)  # doctest: +SKIP
    """
    from . import __version__

    return write_manifest(
        root, roles=roles, dim=exported.dim, n_items=len(data), spec=exported.spec,
        provenance={
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "fastattr_version": __version__,
            "embedder": exported.info.get("source", {}),
            "item_vectors": vectors.provenance,
            "dataset": {"path": str(getattr(data, "path", "") or ""), **dict(getattr(data, "meta", {}) or {})},
            **dict(provenance or {}),
        },
        export={"parity": exported.info.get("parity", {})},
        evaluation=dict(evaluation or {}),
    )


# ----------------------------------------------------------------------------- the whole build


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
    from .data import open_dataset
    from .export import load_export

    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_output(out, overwrite=overwrite)
    exported = load_export(embedder)
    data = open_dataset(dataset)
    if len(data) == 0:
        raise DatasetError("the dataset has no items; nothing to index")
    files = embedder_files(exported, variants)
    vectors_ = item_vectors(exported, data, vectors, batch_size=batch_size, threads=threads, progress=progress)
    with atomic_dir(out, marker="manifest.json", what="bundle", overwrite=overwrite) as tmp:
        roles = {"embedder": "embedder.onnx", "tokenizer": "tokenizer.json", "index": "index.fai", "items": "items.jsonl"}
        for role, (source, name) in files.items():
            shutil.copyfile(source, tmp / name)
            roles[role] = name
        write_index(tmp / roles["index"], vectors_, np.asarray(data.item_ids, dtype=np.uint64),
                    dim=exported.dim, progress=progress)
        write_items(tmp / roles["items"], data)
        if thumbnail_size > 0:
            roles["thumbnails"] = "thumbnails.npy"
            write_thumbnails(tmp / roles["thumbnails"], data.images, thumbnail_size)
        write_bundle_manifest(tmp, roles=roles, exported=exported, data=data, vectors=vectors_,
                              evaluation=evaluation, provenance=provenance)
    return open_bundle(out, verify="sizes").root


def _run_build(args: argparse.Namespace) -> int:
    check_output(args.out, overwrite=args.overwrite)   # before reading --eval or the dataset
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


def _add_build_command(sub: Any) -> None:
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


def register(subparsers: Any) -> None:
    """Add `fastattr bundle build` to the CLI, and `fastattr index build`, its former name, as an alias."""
    for name, help_text in (("bundle", "build the attribution bundle (embedder, index and items of the training set)"),
                            ("index", "former name of `fastattr bundle` (kept for existing scripts)")):
        group = subparsers.add_parser(name, help=help_text)
        sub = group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")
        group.set_defaults(handler=lambda args, group=group: (group.print_help(), 2)[1])
        _add_build_command(sub)
