"""Reading a dataset in the layouts users have on disk, decoding images as a stream into a cached memory map.

Layouts (checked in this order):

- the array layout ``fastattr world make`` and :func:`write_dataset` write (``dataset.json`` +
  ``images.npy`` + ``items.jsonl``);
- an image folder whose ``items.jsonl`` rows carry ``"image"`` (a path inside the folder) and
  ``"caption"`` (optionally ``"item_id"`` and ``"attributes"``);
- Hugging Face ``imagefolder``: ``metadata.jsonl`` or ``metadata.csv`` with ``file_name`` and a
  caption column (``text``, ``caption`` or ``prompt``, or the one named by ``caption_column``);
- webdataset: ``.tar`` shards (a folder of them, or one file) of ``KEY.jpg|png|webp`` +
  ``KEY.txt`` members.

Images of the file layouts are decoded one batch at a time under :data:`IMAGE_POLICY` into a
uint8 memory map in the dataset cache, keyed by the files' names, sizes and times, the captions,
the size and the policy version; a second load of the same folder decodes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import DatasetError
from .cache import cache_root, cached_rows, content_digest
from .dataset import Dataset, ids_of, read_array_layout, read_json_lines, read_jsonl
from .images import IMAGE_POLICY, POLICY_VERSION, to_rgb_square

__all__ = ["load_dataset", "open_dataset", "add_dataset_arguments", "dataset_from_args", "LAYOUTS", "CAPTION_COLUMNS"]

LAYOUTS = (
    "dataset.json + images.npy + items.jsonl (`fastattr world make`)",
    'items.jsonl with {"image": PATH, "caption": TEXT} rows',
    "a Hugging Face imagefolder: metadata.jsonl or metadata.csv with file_name and a caption column",
    "webdataset .tar shards of KEY.jpg/.png/.webp + KEY.txt",
)
CAPTION_COLUMNS = ("text", "caption", "prompt")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CAPTION_SUFFIXES = (".txt", ".caption")
_DECODE_BATCH = 256


@dataclass
class _Source:
    """A file layout's rows before decoding, and how to stream its images in row order."""

    layout: str
    root: Path
    captions: list[str]
    ids: np.ndarray
    uris: list[str]
    images: Callable[[], Iterator[tuple[str, Any]]]   # (uri, path or file object) per row, in order
    files: list[str]                                  # "name:size:mtime_ns" of every file read
    attributes: list[dict[str, Any]] = field(default_factory=list)


def _layouts_text() -> str:
    return "; ".join(LAYOUTS)


def _stat(path: Path, root: Path) -> str:
    st = path.stat()
    return f"{os.path.relpath(path.resolve(), root.resolve())}:{st.st_size}:{st.st_mtime_ns}"


def _inside(root: Path, rel: str, where: str) -> Path:
    file = (root / rel).resolve()
    if root.resolve() not in file.parents:
        raise DatasetError(f"{where}: {rel!r} leaves the folder.")
    return file


def _path_images(pairs: list[tuple[str, Path]]) -> Callable[[], Iterator[tuple[str, Any]]]:
    def stream() -> Iterator[tuple[str, Any]]:
        yield from pairs
    return stream


def _items_source(root: Path) -> _Source:
    listing = root / "items.jsonl"
    rows = read_jsonl(listing)
    if not rows:
        raise DatasetError(f"{listing} lists no items.")
    pairs, files = [], [_stat(listing, root)]
    for line_no, row in enumerate(rows, 1):
        rel = row.get("image")
        if not isinstance(rel, str):
            raise DatasetError(
                f"{listing} line {line_no} has no \"image\" path (and the folder has no dataset.json, "
                "so images must be listed per item).")
        file = _inside(root, rel, f"{listing} line {line_no}")
        pairs.append((rel, file))
        files.append(_stat(file, root) if file.is_file() else f"{rel}:missing")
    return _Source("items.jsonl", root, [r["caption"] for r in rows], ids_of(rows, root),
                   [r["image"] for r in rows], _path_images(pairs), files,
                   [r.get("attributes") or {} for r in rows])


def _metadata_rows(file: Path) -> list[dict[str, Any]]:
    if file.suffix == ".csv":
        with open(file, encoding="utf-8", newline="") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    return read_json_lines(file)


def _imagefolder_source(root: Path, caption_column: str | None) -> _Source:
    file = root / "metadata.jsonl" if (root / "metadata.jsonl").is_file() else root / "metadata.csv"
    try:
        rows = _metadata_rows(file)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file} is not UTF-8 text ({exc.reason}).") from None
    if not rows:
        raise DatasetError(f"{file} lists no items.")
    columns = list(rows[0])
    if "file_name" not in columns:
        raise DatasetError(f"{file} has no file_name column (columns: {', '.join(columns)}); the Hugging Face "
                           "imagefolder layout names each image in file_name.")
    if caption_column is None:
        found = [c for c in CAPTION_COLUMNS if c in columns]
        if not found:
            raise DatasetError(f"{file} has no caption column named {' / '.join(CAPTION_COLUMNS)}; pass "
                               f"--caption-column (caption_column=) with one of: {', '.join(columns)}")
        caption_column = found[0]
    elif caption_column not in columns:
        raise DatasetError(f"{file} has no column {caption_column!r} (--caption-column); its columns are "
                           f"{', '.join(columns)}")
    pairs, captions, files = [], [], [_stat(file, root)]
    for i, row in enumerate(rows):
        rel, caption = row.get("file_name"), row.get(caption_column)
        where = f"{file} row {i + 1}"
        if not isinstance(rel, str) or not rel:
            raise DatasetError(f"{where} has no file_name.")
        if not isinstance(caption, str):
            raise DatasetError(f"{where}: {caption_column} must be text, got {caption!r}.")
        path = _inside(root, rel, where)
        pairs.append((rel, path))
        captions.append(caption)
        files.append(_stat(path, root) if path.is_file() else f"{rel}:missing")
    ids = np.arange(len(rows), dtype=np.uint64)
    if "item_id" in columns:
        try:
            ids = ids_of([{"item_id": int(r["item_id"])} for r in rows], file)
        except (TypeError, ValueError):
            raise DatasetError(f"{file}: every item_id must be a non-negative integer.") from None
    return _Source(f"imagefolder ({file.name}, caption column {caption_column!r})", root, captions, ids,
                   [rel for rel, _ in pairs], _path_images(pairs), files)


def _split_key(member: str) -> tuple[str, str]:
    # webdataset: the key is the path up to the first dot of the file name; the rest is the field.
    folder, _, name = member.rpartition("/")
    stem, dot, rest = name.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (dot + rest).lower()


def _webdataset_source(root: Path, shards: list[Path]) -> _Source:
    captions: list[str] = []
    uris: list[str] = []
    plan: list[tuple[Path, set[str]]] = []   # per shard: the image members to decode, in order
    base = root if root.is_dir() else root.parent
    for shard in shards:
        images: dict[str, str] = {}
        texts: dict[str, str] = {}
        order: list[str] = []
        try:
            with tarfile.open(shard, "r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, ext = _split_key(member.name)
                    if ext.endswith(IMAGE_SUFFIXES) and key not in images:
                        images[key] = member.name
                        order.append(key)
                    elif ext.endswith(CAPTION_SUFFIXES):
                        handle = tar.extractfile(member)
                        texts[key] = handle.read().decode("utf-8").strip() if handle else ""
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetError(f"cannot read the tar shard {shard} ({exc}).") from None
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{shard}: a caption is not UTF-8 text ({exc.reason}).") from None
        lacking = [k for k in order if k not in texts]
        if lacking:
            raise DatasetError(f"{shard}: {len(lacking)} image(s) have no caption member, e.g. {lacking[0]!r} "
                               f"(webdataset pairs KEY.jpg with KEY.txt)")
        for key in order:
            captions.append(texts[key])
            uris.append(f"{shard.name}:{key}")
        plan.append((shard, {images[k] for k in order}))
    if not captions:
        raise DatasetError(f"{root}: the tar shards hold no image + .txt pairs; expected {LAYOUTS[3]}")

    def stream() -> Iterator[tuple[str, Any]]:
        for shard, wanted in plan:
            with tarfile.open(shard, "r|*") as tar:
                for member in tar:
                    if member.name in wanted:
                        handle = tar.extractfile(member)
                        key, _ = _split_key(member.name)
                        wanted = wanted - {member.name}
                        yield f"{shard.name}:{key}", io.BytesIO(handle.read() if handle else b"")

    return _Source(f"webdataset ({len(shards)} shard{'s' * (len(shards) != 1)})", root, captions,
                   np.arange(len(captions), dtype=np.uint64), uris, stream,
                   [_stat(s, base) for s in shards])


def _decode_one(uri: str, source: Any, size: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as img:
            return to_rgb_square(img, size)
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read image {uri} ({exc}).") from None


def _decode(src: _Source, image_size: int | None, cache_dir: Any, progress: bool) -> Dataset:
    stream = src.images()
    first_uri, first = next(stream)
    head = _decode_one(first_uri, first, image_size)
    shape = head.shape
    key = content_digest(json.dumps({
        "layout": src.layout, "root": str(src.root.resolve()), "files": src.files,
        "captions": src.captions, "ids": src.ids.tolist(), "size": image_size, "policy": POLICY_VERSION,
    }))
    pending = [head]

    def fill(lo: int, hi: int) -> np.ndarray:
        rows = pending[:hi - lo]
        del pending[:len(rows)]
        for uri, handle in stream:
            image = _decode_one(uri, handle, image_size)
            if image.shape != shape:
                raise DatasetError(f"{uri} is {image.shape[1]}x{image.shape[0]} but {first_uri} is "
                                   f"{shape[1]}x{shape[0]}; pass image_size (CLI: --image-size) to resize "
                                   "every image to one square size.")
            rows.append(image)
            if len(rows) == hi - lo:
                break
        if len(rows) != hi - lo:
            raise DatasetError(f"{src.root}: fewer images could be read than listed; was the dataset changed "
                               "while it was read?")
        return np.stack(rows)

    images = cached_rows(cache_root(cache_dir) / "datasets" / f"images-{key}.npy", key, shape, fill,
                         n=len(src.captions), batch=_DECODE_BATCH, desc="decoding images", progress=progress,
                         dtype=np.uint8)
    meta = {"n_items": len(src.captions), "image_size": [int(shape[0]), int(shape[1])], "layout": src.layout,
            "source": str(src.root), "digest": key, "image_policy": IMAGE_POLICY}
    return Dataset(images=images, captions=src.captions, item_ids=src.ids,
                   attributes=src.attributes or [{} for _ in src.captions], uris=list(src.uris),
                   path=src.root, meta=meta)


def _resized(ds: Dataset, size: int, cache_dir: Any, progress: bool) -> Dataset:
    from PIL import Image

    key = content_digest(ds.digest(), f":{size}:{POLICY_VERSION}")
    images = cached_rows(
        cache_root(cache_dir) / "datasets" / f"images-{key}.npy", key, (size, size, 3),
        lambda lo, hi: np.stack([to_rgb_square(Image.fromarray(np.asarray(a)), size) for a in ds.images[lo:hi]]),
        n=len(ds), batch=_DECODE_BATCH, desc="resizing images", progress=progress, dtype=np.uint8)
    meta = {**ds.meta, "image_size": [size, size], "digest": key, "resized_from": list(ds.image_size),
            "image_policy": IMAGE_POLICY}
    return Dataset(images=images, captions=ds.captions, item_ids=ds.item_ids, attributes=ds.attributes,
                   uris=ds.uris, path=ds.path, meta=meta)


def load_dataset(path: str | os.PathLike[str], *, image_size: int | None = None, caption_column: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, progress: bool = False) -> Dataset:
    """Read a dataset in any layout of :data:`LAYOUTS`, images as a read-only memory map.

    Args:
        path: the dataset folder (or one webdataset ``.tar``).
        image_size: the side of the square images to produce (the model's resolution); images
            are converted under :data:`IMAGE_POLICY`. None keeps the stored size, which must then
            be one size for all images.
        caption_column: imagefolder only: the metadata column with the captions.
        cache_dir: where decoded images are cached (default ``$FASTATTR_CACHE`` or
            ``~/.cache/fastattr``, under ``datasets/``).
        progress: show a progress bar while images are decoded.

    Raises:
        DatasetError: the path is missing or in no known layout, or a file is unreadable or
            inconsistent; the message names the file and what was expected.

    Example:
        >>> ds = load_dataset("data/my-imagefolder", image_size=256)  # doctest: +SKIP
        >>> ds.images.shape                                           # doctest: +SKIP
        (10000, 256, 256, 3)
    """
    if image_size is not None and (not isinstance(image_size, int) or not 1 <= image_size <= 8192):
        raise DatasetError(f"image_size must be an integer side length in 1..8192, got {image_size!r}.")
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist. Give a folder in one of these layouts: "
                           f"{_layouts_text()}; or create one with `fastattr world make {root}`.")
    if root.is_file():
        if root.suffix != ".tar":
            raise DatasetError(f"{root} is a file; give a dataset folder ({_layouts_text()}) or a .tar shard.")
        return _decode(_webdataset_source(root, [root]), image_size, cache_dir, progress)
    if (root / "dataset.json").is_file():
        if not (root / "items.jsonl").is_file():
            raise DatasetError(f"{root} has dataset.json but no items.jsonl: the folder is incomplete; regenerate it.")
        ds = read_array_layout(root)
        if image_size is None or ds.image_size == (image_size, image_size):
            return ds
        return _resized(ds, image_size, cache_dir, progress)
    if (root / "items.jsonl").is_file():
        source = _items_source(root)
    elif (root / "metadata.jsonl").is_file() or (root / "metadata.csv").is_file():
        source = _imagefolder_source(root, caption_column)
    else:
        shards = sorted(p for p in root.iterdir() if p.suffix == ".tar" and p.is_file())
        if not shards:
            raise DatasetError(f"{root} has no items.jsonl, dataset.json, metadata.jsonl/metadata.csv or .tar "
                               f"shards: it is not a dataset folder. Layouts read: {_layouts_text()}.")
        source = _webdataset_source(root, shards)
    return _decode(source, image_size, cache_dir, progress)


def open_dataset(dataset: Any, **options: Any) -> Dataset:
    """``dataset`` itself when it is already loaded, else :func:`load_dataset` of it with ``options``."""
    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset, **options)


DATASET_HELP = ("dataset: a fastattr world folder, an items.jsonl image folder, a Hugging Face imagefolder "
                "(metadata.jsonl/.csv with file_name + caption column) or a folder of webdataset .tar shards")

CAPTION_HELP = "caption column of an imagefolder's metadata (default: the first of text, caption, prompt)"


def add_dataset_arguments(parser: Any, *, required: bool = True) -> None:
    """``--dataset``, ``--image-size`` and ``--caption-column``, the same on every command that reads a dataset."""
    parser.add_argument("--dataset", required=required, help=DATASET_HELP)
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize and centre-crop the images to this square side (needed when they differ in "
                             "size; `fastattr build` uses the model's resolution)")
    parser.add_argument("--caption-column", default=None, help=CAPTION_HELP)


def dataset_from_args(args: Any) -> Any:
    """The dataset a command's :func:`add_dataset_arguments` name: a loaded Dataset, or None."""
    if getattr(args, "dataset", None) is None:
        return None
    return load_dataset(args.dataset, image_size=args.image_size, caption_column=args.caption_column, progress=True)
