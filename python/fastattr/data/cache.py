"""Arrays computed once, row batch by row batch, into a memory-mapped ``.npy`` keyed by what they came from."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._atomic import file_mode, remove_stale_temps, write_json
from .._progress import make_progress

__all__ = ["cached_rows", "cache_root", "content_digest"]


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where decoded datasets are cached: ``cache_dir``, else ``$FASTATTR_CACHE``, else ``~/.cache/fastattr``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("FASTATTR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fastattr"


def content_digest(*parts: Any) -> str:
    """A cache key: blake2b over strings, bytes, numbers and arrays (or torch tensors), each array
    hashed with its shape and dtype a slice at a time, so a memory map is never read whole."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, str):
            h.update(part.encode())
        elif isinstance(part, bytes):
            h.update(part)
        elif part is None or isinstance(part, (bool, int, float)):
            h.update(str(part).encode())
        else:
            array = part.detach().cpu().numpy() if hasattr(part, "detach") else part
            h.update(f"{array.shape}{np.asarray(array[:0]).dtype}".encode())
            for lo in range(0, len(array), 4096):
                h.update(np.ascontiguousarray(array[lo:lo + 4096]).tobytes())
    return h.hexdigest()


def cached_rows(path: Path, key: str, shape: tuple[int, ...], fill: Callable[[int, int], np.ndarray], *,
                n: int, batch: int = 64, desc: str = "", progress: bool = True,
                dtype: type = np.float32) -> np.ndarray:
    """An (n, *shape) array on disk, computed by ``fill(lo, hi)`` once per ``key``; opened read-only.

    ``fill`` is called for consecutive row ranges in order, so it may consume an iterator. The
    rows go into a temporary memory map renamed into place when complete, so a crash leaves no
    partial array under the final name and the array is never held in memory whole.

    Example:
        >>> import tempfile
        >>> a = cached_rows(Path(tempfile.mkdtemp()) / "x.npy", "k", (2,),
        ...                 lambda lo, hi: np.ones((hi - lo, 2)), n=3, progress=False)
        >>> a.shape, float(a.sum())
        ((3, 2), 6.0)
    """
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        try:
            if json.loads(meta.read_text(encoding="utf-8")).get("key") == key:
                return np.load(path, mmap_mode="r", allow_pickle=False)
        except (json.JSONDecodeError, ValueError, OSError):
            pass  # an unreadable cache is recomputed
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # The header comes from numpy; the rows are appended with plain writes, not through a memory
    # map, so that written pages are not counted against this process and leave the page cache freely.
    header = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, *shape))
    offset = header.offset
    del header
    try:
        with open(tmp, "r+b") as handle, make_progress(total=n, desc=desc, unit="row",
                                                        disable=not progress or not desc) as bar:
            handle.seek(offset)
            for lo in range(0, n, batch):
                hi = min(lo + batch, n)
                rows = np.ascontiguousarray(fill(lo, hi), dtype=dtype)
                if rows.shape != (hi - lo, *shape):
                    raise ValueError(f"cached_rows: fill({lo}, {hi}) gave shape {rows.shape}, "
                                     f"expected {(hi - lo, *shape)}")
                handle.write(rows.tobytes())
                bar.update(hi - lo)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_json(meta, {"key": key})
    return np.load(path, mmap_mode="r", allow_pickle=False)
