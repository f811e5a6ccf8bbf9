"""The native memory-mapped int8 index from Python: build, append in chunks, open, search.

Example:
    >>> import numpy as np, tempfile, os
    >>> from fastattr import index
    >>> path = os.path.join(tempfile.mkdtemp(), "items.fai")
    >>> vectors = np.eye(4, 8, dtype=np.float32)
    >>> index.build(path, vectors, np.array([10, 11, 12, 13], dtype=np.uint64))
    >>> found = index.open(path)
    >>> ids, scores = found.search(vectors[2], k=2)
    >>> int(ids[0]), round(float(scores[0]), 3)
    (12, 1.0)
"""

from __future__ import annotations

import operator
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable

import numpy as np

from ._atomic import remove_stale_temps
from .errors import IndexFormatError, IndexQueryError, MissingDependencyError

try:
    from . import _core
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise MissingDependencyError(
        "fastattr's native core (fastattr._core) is not built. Install the package with "
        "`pip install .`, or for development run scripts/build_inplace.sh."
    ) from exc

__all__ = ["Index", "IndexWriter", "build", "open", "kernel"]

# Rows converted to float32 per writer call: bounds the extra memory of writing huge arrays.
_CHUNK_ROWS = 65536

# The core (cpp/search.hpp, cpp/writer.hpp) owns every check it can see, and its message. This
# module checks only what Python alone knows: a bool or a float passed as an integer, ints beyond
# 64 bits, non-numeric arrays and the dtype conversion, exclude ids as a Python iterable, None
# against an explicit threads=0, which method was called with which rank, one id per vector before
# the input is cut into chunks, and a file overwritten in place.
_INT64_LIMIT = 2**63   # the core takes signed 64-bit counts


def kernel() -> str:
    """Name of the scan kernel this process uses: "avx512_vnni", "avx2", "neon" or "scalar".

    Chosen once per process from the CPU; ``FASTATTR_KERNEL=scalar`` (or ``avx2``) narrows it.

    Example:
        >>> kernel() in {"avx512_vnni", "avx2", "neon", "scalar"}
        True
    """
    return str(_core.kernel())


def _as_int(value: Any, name: str, error: type[Exception]) -> int:
    """An integer argument as the core's int64; its range is the core's to check."""
    if isinstance(value, bool):
        raise error(f"{name} must be an integer, got a bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise error(f"{name} must be an integer, got {type(value).__name__}") from None
    if not -_INT64_LIMIT <= number < _INT64_LIMIT:
        raise error(f"{name} = {number} does not fit in 64 bits")
    return number


def _as_ids(values: Any, what: str, error: type[Exception]) -> np.ndarray:
    """Non-negative integer ids as a contiguous uint64 array; anything else is refused."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise error(f"{what} must be a 1-D sequence of integer ids, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if array.dtype.kind not in "iu":
        raise error(f"{what} must hold integers (item ids), got dtype {array.dtype}")
    if array.dtype.kind == "i" and bool((array < 0).any()):
        raise error(f"{what} must be non-negative, found {int(array.min())}")
    return np.ascontiguousarray(array, dtype=np.uint64)


def _real_array(values: Any, what: str, error: type[Exception]) -> np.ndarray:
    """``values`` as a numpy array of real numbers, not yet converted to float32."""
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        raise error(f"{what} must be real numbers, got dtype {array.dtype}")
    return array


def _rows_and_ids(vectors: Any, ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """The vectors (N, dim) and ids (N,) of build() or IndexWriter.append, as numpy arrays.

    The writer (the core) checks dim, NaN/inf and repeated ids. One id per vector is checked here,
    over the whole input, because the core only sees the chunks it is handed.
    """
    rows = _real_array(vectors, "vectors", IndexFormatError)
    if rows.ndim != 2:
        raise IndexFormatError(f"vectors must be a 2-D array (N, dim), got shape {rows.shape}")
    id_array = _as_ids(ids, "ids", IndexFormatError)
    if len(id_array) != len(rows):
        raise IndexFormatError(f"got {len(rows)} vectors but {len(id_array)} ids; pass one id per vector")
    return rows, id_array


def exclusion_ids(exclude: Any, error: type[Exception] = IndexQueryError) -> np.ndarray:
    """``exclude`` (None, an integer array or an iterable of integer ids) as a uint64 array.

    Only integers count: a string is not the ids of its digits, 2.9 is not 2 and True is not 1,
    so each is refused with ``error`` rather than converted by a guess. Python ints are checked one
    by one, because numpy turns a list that mixes ids below and above 2**63 into float64.
    """
    if exclude is None:
        return np.zeros(0, dtype=np.uint64)
    if isinstance(exclude, np.ndarray):
        return _as_ids(exclude, "exclude", error)
    if isinstance(exclude, (str, bytes)) or not hasattr(exclude, "__iter__"):
        raise error(f"exclude must be an iterable of integer item ids, got {type(exclude).__name__} {exclude!r:.60}")
    values = list(exclude)
    for value in values:
        if isinstance(value, (list, tuple, np.ndarray)):
            raise error(f"exclude must be a 1-D sequence of integer ids, got an element {value!r:.60}")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < 2**64:
            raise error(f"exclude must hold non-negative integers (item ids) below 2**64; got {value!r:.60} "
                        f"({type(value).__name__})")
    return np.fromiter((int(v) for v in values), dtype=np.uint64, count=len(values))


def _threads(threads: int | None) -> int:
    """None (every CPU) as the core's 0. An explicit 0 is refused here: the core cannot tell it
    from None. The core checks the range [1, 1024] with the same message."""
    if threads is None:
        return 0
    count = _as_int(threads, "threads", IndexQueryError)
    if count == 0:
        raise IndexQueryError("threads must be between 1 and 1024 (or None for all CPUs), got 0.")
    return count


class IndexWriter:
    """Writes an index in chunks, so the vectors never need to be in memory at once.

    Rows go to a temporary file beside ``path``; :meth:`close` (or leaving the ``with`` block
    normally) fsyncs it and renames it into place. An exception inside the block, or
    :meth:`abort`, leaves ``path`` untouched. Memory held: 16 bytes per row (scale, code sum, id).

    Args:
        path: the index file to create (replaced atomically if it exists).
        dim: vector dimension, 1 to 16384.
        rerank_vectors: also store float16 vectors for exact re-ranking (3x the file size of
            int8 codes alone, and recall@10 of 1.0 instead of about 0.97).

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "big.fai")
        >>> with IndexWriter(path, dim=8) as writer:
        ...     for start in range(0, 100, 50):
        ...         chunk = np.random.default_rng(start).standard_normal((50, 8)).astype(np.float32)
        ...         writer.append(chunk, np.arange(start, start + 50, dtype=np.uint64))
        >>> len(open(path))
        100
    """

    def __init__(self, path: str | os.PathLike[str], dim: int, *, rerank_vectors: bool = True) -> None:
        self.path = Path(path)
        dim = _as_int(dim, "dim", IndexFormatError)   # the core refuses a dim outside [1, 16384]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)   # what killed writers left beside this path
        self._writer: Any = _core.Writer(str(self.path), dim, bool(rerank_vectors))
        self._closed = False

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._writer.dim)

    def __len__(self) -> int:
        return int(self._writer.count)

    def append(self, vectors: Any, ids: Any) -> None:
        """Quantize and write ``vectors`` (n, dim) with their external ``ids`` (n,), non-negative ints.

        Raises:
            IndexFormatError: wrong shape, NaN/inf values, bad ids, or a closed writer.
        """
        self._write(*_rows_and_ids(vectors, ids))

    def _write(self, rows: np.ndarray, ids: np.ndarray) -> None:
        # float32 a chunk at a time, so a huge or memory-mapped float64 input is never copied whole.
        # An empty input still makes one call: the core refuses it if the writer is closed.
        for start in range(0, max(len(rows), 1), _CHUNK_ROWS):
            stop = start + _CHUNK_ROWS
            self._writer.append(np.ascontiguousarray(rows[start:stop], dtype=np.float32), ids[start:stop])

    def close(self) -> None:
        """Finish the file: write the id tables and header, fsync, rename over ``path``.

        Raises:
            IndexFormatError: no rows were appended, or ids repeat.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.finish()
        finally:
            self._writer.abort()  # removes the temporary file if finish() failed; no-op after success

    def abort(self) -> None:
        """Discard everything written; ``path`` stays as it was."""
        self._closed = True
        self._writer.abort()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def build(
    path: str | os.PathLike[str], vectors: Any, ids: Any, *, rerank_vectors: bool = True
) -> None:
    """Write an index of ``vectors`` (N, dim) float with external ``ids`` (N,) to ``path`` atomically.

    ``vectors`` may be a memory-mapped array: it is converted to float32 in bounded chunks.

    Raises:
        IndexFormatError: empty input, wrong shapes, NaN/inf, negative or repeated ids.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.fai")
        >>> build(path, np.ones((3, 4), np.float32), [7, 8, 9])
        >>> open(path).ids.tolist()
        [7, 8, 9]
    """
    rows, id_array = _rows_and_ids(vectors, ids)   # checked before a temporary file is made
    with IndexWriter(path, rows.shape[1], rerank_vectors=rerank_vectors) as writer:
        writer._write(rows, id_array)


class Index:
    """An opened index: the file is memory-mapped read-only, so opening does no O(N) work.

    Searches release the GIL and may run from many Python threads at once.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.fai")
        >>> build(path, np.eye(3, dtype=np.float32), [5, 6, 7])
        >>> idx = open(path)
        >>> len(idx), idx.dim
        (3, 3)
    """

    def __init__(self, core: Any, identity: tuple[int, int, int, int] | None = None) -> None:
        self._core = core
        # (device, inode, size, mtime) of the mapped file when it was opened, see _check_unchanged.
        self._identity = identity

    def _check_unchanged(self) -> None:
        """Refuse to read a mapping whose file was overwritten in place (cp, rsync --inplace).

        Such a write changes or truncates the mapped pages under us: reading them returns
        garbage or kills the process with SIGBUS. A file *replaced* by rename (how fastattr
        writes) is a different inode and the old mapping stays valid, so it is served as opened.
        One stat per search call.
        """
        if self._identity is None:
            return
        try:
            st = os.stat(self.path)
        except OSError:
            return   # renamed or removed: the mapping of the old inode stays valid
        if (st.st_dev, st.st_ino) == self._identity[:2] and (st.st_size, st.st_mtime_ns) != self._identity[2:]:
            raise IndexQueryError(
                f"the index file {self.path} was modified in place after it was opened (size or time changed); "
                "reading the mapping now could return garbage or crash: reopen it. Replace index files by "
                "writing a new file and renaming it over the old one, as fastattr's writers do.")

    def __len__(self) -> int:
        return len(self._core)

    def __repr__(self) -> str:
        return f"Index({self.path!r}, items={len(self)}, dim={self.dim})"

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._core.dim)

    @property
    def path(self) -> str:
        """The file this index maps."""
        return str(self._core.path)

    @property
    def file_bytes(self) -> int:
        """Size of the index file in bytes."""
        return int(self._core.file_bytes)

    @property
    def has_rerank_vectors(self) -> bool:
        """Whether the file stores float16 vectors, so ``rerank`` gives exact scores."""
        return bool(self._core.has_rerank_vectors)

    @property
    def ids(self) -> np.ndarray:
        """External item ids in row order: a read-only uint64 view of the mapped file."""
        return self._core.ids  # type: ignore[no-any-return]

    def warmup(self, threads: int | None = None) -> None:
        """Read every page the scan touches, so the first search pays no page faults."""
        self._core.warmup(_threads(threads))

    def verify(self) -> None:
        """Check the data checksum and id tables (O(N); open() only checks the header).

        Raises:
            IndexFormatError: the file is corrupted.
        """
        self._core.verify()

    def search(
        self,
        query: Any,
        k: int,
        *,
        exclude: Iterable[int] | np.ndarray | None = None,
        rerank: int = 4,
        threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by inner product with ``query`` (dim,); best first.

        Args:
            query: one vector of ``dim`` finite floats.
            k: number of results, 1 to the number of items left after ``exclude``.
            exclude: item ids never to return (opt-outs); ids not in the index are ignored.
            rerank: re-rank ``rerank * k`` int8 candidates with the stored float16 vectors
                (0 = return int8 estimates; ignored without re-rank vectors).
            threads: threads for the scan; None uses every CPU, 1 suits servers that get their
                concurrency from parallel requests.

        Returns:
            ``(ids uint64 (k,), scores float32 (k,))``, scores descending, ties by row order.

        Raises:
            IndexQueryError: wrong dim, NaN/inf, k out of range, bad exclude ids or threads.

        Example:
            >>> import numpy as np, tempfile, os
            >>> path = os.path.join(tempfile.mkdtemp(), "a.fai")
            >>> build(path, np.eye(3, dtype=np.float32), [5, 6, 7])
            >>> open(path).search(np.array([0, 1, 0.5]), k=1, exclude=[6])[0].tolist()
            [7]
        """
        array = _real_array(query, "query", IndexQueryError)
        if array.ndim != 1:
            raise IndexQueryError(
                f"search takes one query of shape ({self.dim},), got {array.shape}; use search_batch for many"
            )
        ids, scores = self.search_batch(array[None, :], k, exclude=exclude, rerank=rerank, threads=threads)
        return ids[0], scores[0]

    def search_batch(
        self,
        queries: Any,
        k: int,
        *,
        exclude: Iterable[int] | np.ndarray | None = None,
        rerank: int = 4,
        threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` for queries (B, dim) in one pass over the rows (each row block is read
        once from memory for the whole batch); returns ``(ids (B, k), scores (B, k))``.

        The same ``exclude`` applies to every query.

        Example:
            >>> import numpy as np, tempfile, os
            >>> path = os.path.join(tempfile.mkdtemp(), "a.fai")
            >>> build(path, np.eye(3, dtype=np.float32), [5, 6, 7])
            >>> open(path).search_batch(np.eye(3)[:2], k=1)[0].tolist()
            [[5], [6]]
        """
        array = _real_array(queries, "queries", IndexQueryError)
        if array.ndim != 2:
            raise IndexQueryError(f"search_batch takes queries of shape (B, {self.dim}), got {array.shape}")
        count = _as_int(k, "k", IndexQueryError)
        factor = _as_int(rerank, "rerank", IndexQueryError)
        excluded = exclusion_ids(exclude)
        slots = _threads(threads)
        self._check_unchanged()
        # The core checks dim, k, rerank, threads and NaN/inf, each with its own message.
        ids, scores = self._core.search(np.ascontiguousarray(array, dtype=np.float32), count, excluded, factor, slots)
        return ids, scores


def open(path: str | os.PathLike[str]) -> Index:  # noqa: A001 - the module's verb, used as index.open
    """Map the index file at ``path`` read-only; checks the header, does no O(N) work.

    Raises:
        IndexFormatError: missing, foreign, truncated or corrupted file.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.fai")
        >>> build(path, np.eye(2, dtype=np.float32), [1, 2])
        >>> open(path).dim
        2
    """
    try:
        st = os.stat(path)
        identity: tuple[int, int, int, int] | None = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        identity = None   # the core reports the missing file with its own message
    return Index(_core.Index(os.fspath(path)), identity)
