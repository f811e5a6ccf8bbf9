"""The Dataset type every stage uses, and the array layout (``dataset.json`` + ``images.npy``) it is saved as."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._atomic import atomic_dir
from .cache import content_digest
from ..errors import DatasetError

__all__ = ["Dataset", "write_dataset", "read_array_layout", "read_jsonl", "ids_of", "FORMAT", "VERSION"]

FORMAT = "fastattr-dataset"
VERSION = 1


@dataclass
class Dataset:
    """Image–caption pairs in row order; row i is item ``item_ids[i]``.

    Attributes:
        images: uint8 (N, H, W, 3), memory-mapped when read from ``images.npy``.
        captions: one caption per row.
        item_ids: uint64 (N,) external ids (the row index for generated worlds).
        attributes: one dict per row (empty dicts when the source has none).
        uris: optional source path or URI per row.
        path: the folder it was read from, if any.
        meta: the rest of ``dataset.json``.

    Example:
        >>> ds = Dataset(np.zeros((1, 4, 4, 3), np.uint8), ["a"], np.zeros(1, np.uint64), [{}])
        >>> len(ds), ds.image_size
        (1, (4, 4))
    """

    images: np.ndarray
    captions: list[str]
    item_ids: np.ndarray
    attributes: list[dict[str, Any]]
    uris: list[str | None] | None = None
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    _digest: str | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def digest(self) -> str:
        """A hex digest of the images, captions and ids (keys every cache computed from the data).

        A dataset decoded from image files carries its cache key (file sizes, times, policy) in
        ``meta["digest"]``; otherwise the arrays are hashed once, a slice at a time.
        """
        if self._digest is None:
            known = (self.meta or {}).get("digest")
            if isinstance(known, str) and known:
                self._digest = known
            else:
                self._digest = content_digest(json.dumps(list(self.captions)),
                                              np.asarray(self.item_ids, dtype=np.uint64), self.images)
        return self._digest

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])


def write_dataset(
    path: str | os.PathLike[str], images: np.ndarray, captions: Sequence[str],
    attributes: Sequence[dict[str, Any]] | None = None, *, item_ids: Sequence[int] | None = None,
    uris: Sequence[str | None] | None = None, meta: dict[str, Any] | None = None, overwrite: bool = False,
) -> Path:
    """Write ``images.npy``, ``items.jsonl`` and ``dataset.json`` into a new folder, atomically.

    An existing folder at ``path`` is replaced only if it is a dataset folder, or with ``overwrite``.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_dataset(pathlib.Path(tempfile.mkdtemp()) / "d",
        ...                   np.zeros((2, 4, 4, 3), np.uint8), ["x", "y"])
        >>> len(read_array_layout(p))
        2
    """
    images = np.ascontiguousarray(images)
    n = int(images.shape[0]) if images.ndim == 4 else -1
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise DatasetError(
            f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}."
        )
    attributes = list(attributes) if attributes is not None else [{} for _ in range(n)]
    ids = list(range(n)) if item_ids is None else [int(i) for i in item_ids]
    if not (len(captions) == len(attributes) == len(ids) == n):
        raise DatasetError(
            f"images ({n}), captions ({len(captions)}), attributes ({len(attributes)}) and "
            f"item_ids ({len(ids)}) must have one entry per item."
        )
    if uris is not None and len(uris) != n:
        raise DatasetError(f"uris has {len(uris)} entries for {n} images.")
    target = Path(path)
    with atomic_dir(target, marker="dataset.json", what="dataset folder", overwrite=overwrite) as tmp:
        np.save(tmp / "images.npy", images, allow_pickle=False)
        with open(tmp / "items.jsonl", "w", encoding="utf-8") as handle:
            for i in range(n):
                row: dict[str, Any] = {"item_id": ids[i], "caption": str(captions[i]),
                                       "attributes": attributes[i]}
                if uris is not None and uris[i] is not None:
                    row["uri"] = uris[i]
                handle.write(json.dumps(row, sort_keys=True) + "\n")
        header = {"format": FORMAT, "version": VERSION, "n_items": n,
                  "image_size": [int(images.shape[1]), int(images.shape[2])], **(meta or {})}
        (tmp / "dataset.json").write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
    return target


def read_json_lines(path: Path, string_field: str | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, one per non-blank line, each with a string
    ``string_field`` when one is named; a bad line is a DatasetError naming it."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{path} line {line_no} is not valid JSON ({exc.msg}). Fix or regenerate the file."
                ) from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path} line {line_no} must be a JSON object.")
            if string_field is not None and not isinstance(row.get(string_field), str):
                raise DatasetError(f"{path} line {line_no} must have a string \"{string_field}\".")
            rows.append(row)
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """An items.jsonl listing: JSON objects, each with a string "caption"."""
    return read_json_lines(path, string_field="caption")


def ids_of(rows: list[dict[str, Any]], where: Path) -> np.ndarray:
    ids = [r.get("item_id", i) for i, r in enumerate(rows)]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise DatasetError(f"{where}: every item_id must be a non-negative integer.")
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{where}: item_id values must be unique.")
    return np.asarray(ids, dtype=np.uint64)


def read_array_layout(root: Path) -> Dataset:
    """Read a folder written by :func:`write_dataset`; ``images`` stays memory-mapped."""
    try:
        header = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{root / 'dataset.json'} is not valid JSON ({exc}).") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DatasetError(f"{root / 'dataset.json'} does not declare format {FORMAT!r}.")
    if header.get("version") != VERSION:
        raise DatasetError(
            f"{root / 'dataset.json'} has version {header.get('version')!r}; this fastattr reads "
            f"version {VERSION}. Regenerate the dataset or upgrade fastattr."
        )
    try:
        images = np.load(root / "images.npy", mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{root} has no images.npy. Regenerate the dataset folder.") from None
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{root / 'images.npy'} cannot be read as an array ({exc}).") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise DatasetError(
            f"{root / 'images.npy'} must hold uint8 (N, H, W, 3), found {images.dtype} {images.shape}."
        )
    rows = read_jsonl(root / "items.jsonl")
    n = header.get("n_items")
    if n != images.shape[0] or n != len(rows):
        raise DatasetError(
            f"{root}: dataset.json says n_items={n!r}, images.npy has {images.shape[0]} rows and "
            f"items.jsonl {len(rows)} lines. The folder is incomplete; regenerate it."
        )
    meta = {k: v for k, v in header.items() if k not in ("format", "version")}
    uris = [r.get("uri") for r in rows]
    return Dataset(
        images=images, captions=[r["caption"] for r in rows], item_ids=ids_of(rows, root),
        attributes=[r.get("attributes") or {} for r in rows],
        uris=uris if any(u is not None for u in uris) else None, path=root, meta=meta,
    )
