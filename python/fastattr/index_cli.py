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
from typing import Any, Mapping

import numpy as np

from ._atomic import atomic_dir, atomic_open
from .bundle import open_bundle, write_manifest
from .errors import CheckpointError, DatasetError
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
) -> Path:
    """Write a complete bundle for ``dataset`` with the exported ``embedder``; atomic.

    Args:
        out: the bundle folder to create (an existing one is replaced only when the new one is done).
        embedder: folder from ``fastattr export`` (embedder.onnx, tokenizer.json, export.json).
        dataset: dataset folder (``fastattr world make``) or a loaded ``fastattr.world.Dataset``.
        batch_size: items per ONNX Runtime call.
        thumbnail_size: longest side of the stored thumbnails for reports; 0 stores none.
        evaluation: figures to record (e.g. the student's mAP table).
        provenance: anything else worth recording (teacher, student, world settings).
        threads: ONNX Runtime threads.

    Returns:
        The bundle folder, verified by opening it.

    Example:
        >>> build_bundle("bundles/shapes", embedder="runs/export", dataset="runs/world")  # doctest: +SKIP
    """
    from . import index as index_module
    from .export import load_export
    from .world import load_dataset

    exported = load_export(embedder)
    data = dataset if hasattr(dataset, "images") else load_dataset(dataset)
    n_items = len(data)
    if n_items == 0:
        raise DatasetError("the dataset has no items; nothing to index")
    captions = list(data.captions)
    ids = np.asarray(data.item_ids, dtype=np.uint64)
    uris = list(data.uris) if getattr(data, "uris", None) else [None] * n_items
    vectors = embed_items(exported.onnx_path, exported.spec, exported.tokenizer_path, data.images, captions,
                          batch_size=batch_size, threads=threads, progress=progress)
    if vectors.shape != (n_items, exported.dim):
        raise CheckpointError(f"embedder returned {vectors.shape}, expected ({n_items}, {exported.dim})")
    with atomic_dir(out) as tmp:
        roles = {"embedder": "embedder.onnx", "tokenizer": "tokenizer.json", "index": "index.fai", "items": "items.jsonl"}
        shutil.copyfile(exported.onnx_path, tmp / "embedder.onnx")
        shutil.copyfile(exported.tokenizer_path, tmp / "tokenizer.json")
        for role, path in exported.variants().items():
            shutil.copyfile(path, tmp / path.name)
            roles[role] = path.name
        index_module.build(str(tmp / "index.fai"), vectors, ids)
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
                "dataset": {"path": str(getattr(data, "path", "") or ""), **dict(getattr(data, "meta", {}) or {})},
                **dict(provenance or {}),
            },
            export={"parity": exported.info.get("parity", {})},
            evaluation=dict(evaluation or {}),
        )
    return open_bundle(out, verify="sizes").root


def _run_build(args: argparse.Namespace) -> int:
    evaluation = None
    if args.eval:
        try:
            evaluation = json.loads(Path(args.eval).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read evaluation figures from {args.eval!r}: {exc}") from exc
    root = build_bundle(args.out, embedder=args.embedder, dataset=args.dataset, batch_size=args.batch_size,
                        thumbnail_size=args.thumbnail_size, evaluation=evaluation, threads=args.threads)
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
    build.add_argument("--dataset", required=True, help="dataset folder (from `fastattr world make`)")
    build.add_argument("--out", required=True, help="bundle folder to write")
    build.add_argument("--batch-size", type=int, default=64)
    build.add_argument("--thumbnail-size", type=int, default=64, help="longest thumbnail side; 0 = no thumbnails")
    build.add_argument("--eval", help="JSON file of evaluation figures to record in the manifest")
    build.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    build.set_defaults(handler=_run_build)
