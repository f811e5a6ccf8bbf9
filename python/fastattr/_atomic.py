"""Atomic file and folder writes: write to a temporary sibling, fsync, then rename into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "write_bytes", "write_text", "write_json", "save_npy", "atomic_dir", "file_mode",
           "check_replaceable", "recover", "remove_stale_temps"]


def _umask() -> int:
    # Linux reports the umask without changing it; setting it to 0 and back (the only portable way)
    # briefly gives files that other threads create in between world-writable modes.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The permissions a plain ``open()`` would give a new file (0o666 less the umask).

    mkstemp makes its files 0o600; files we publish must be readable by whoever serves them.
    """
    return 0o666 & ~_umask()


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry itself reaches the disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on clean exit fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_open(target, "w") as f:
        ...     _ = f.write("hello")
        >>> target.read_text()
        'hello'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npy(path: str | os.PathLike[str], array: Any) -> None:
    """Save one numpy array as ``.npy`` atomically (never pickled)."""
    import numpy as np

    with atomic_open(path, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temporaries a killed writer of ``target`` left beside it; returns what was removed.

    Our temporaries are named ``.NAME.PID.*.tmp`` (files and folders) and the native index
    writer's ``.NAME.tmp-PID-*``; only those whose writer process no longer exists are removed.
    """
    removed = []
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    prefix = f".{target.name}."
    for entry in siblings:
        name = entry.name
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if rest.endswith(".tmp") and rest.split(".", 1)[0].isdigit():
            pid = int(rest.split(".", 1)[0])
        elif rest.startswith("tmp-") and rest[4:].split("-", 1)[0].isdigit():
            pid = int(rest[4:].split("-", 1)[0])
        else:
            continue
        if pid == os.getpid() or _pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def recover(target: Path) -> bool:
    """Put back the previous folder of ``target`` if a replacement was cut off between its two renames.

    Only the fallback replacement (no atomic exchange available) can leave ``target`` missing with
    its old copy at ``.NAME.old-PID``; returns True when that copy was restored.
    """
    if target.exists():
        return False
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds:
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            os.replace(old, target)
            return True
    return False


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def check_replaceable(target: Path, marker: str | None, *, overwrite: bool = False, what: str = "output") -> None:
    """Refuse to replace ``target`` unless it is absent, empty, or an output of the same kind.

    "Same kind" means a folder holding ``marker`` (e.g. ``manifest.json`` for a bundle). Anything
    else, a user's folder or a file, is replaced only with ``overwrite``.
    """
    from .errors import InputError

    if overwrite or not (target.exists() or target.is_symlink()):
        return
    if target.is_dir() and not target.is_symlink():
        if not any(target.iterdir()) or (marker is not None and (target / marker).is_file()):
            return
        found = ", ".join(sorted(p.name for p in target.iterdir())[:5])
        raise InputError(f"{target} already exists and is not a {what} (it has no {marker}; it holds {found}"
                         f"{' ...' if len(list(target.iterdir())) > 5 else ''}); refusing to replace it. "
                         "Choose another path, or pass --overwrite to replace it.")
    raise InputError(f"{target} already exists and is a file, not a {what} folder; refusing to replace it. "
                     "Choose another path, or pass --overwrite to replace it.")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, marker: str | None = None, overwrite: bool = False,
               what: str = "output") -> Iterator[Path]:
    """Build a folder under a temporary name and put it at ``path`` only when complete.

    An existing folder at ``path`` is replaced in one atomic exchange after the new one is
    finished, so a reader (or a crash) sees the old folder or the new one, never neither; where
    the exchange is not available, a cut-off replacement is undone by :func:`recover` on the next
    write. An existing ``path`` that is not an output of this kind (no ``marker`` in it) is
    refused unless ``overwrite`` (:func:`check_replaceable`). Temporaries of killed writers are
    removed first.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_dir(root / "out") as tmp:
        ...     _ = (tmp / "x.txt").write_text("1")
        >>> (root / "out" / "x.txt").read_text()
        '1'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    remove_stale_temps(target)
    check_replaceable(target, marker, overwrite=overwrite, what=what)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        # mkdtemp makes the folder 0o700, and some writers (safetensors) make their files 0o600:
        # published outputs get the modes a plain open() would give, so whoever serves them can read.
        os.chmod(tmp, 0o777 & ~_umask())
        for root, _dirs, files in os.walk(tmp):
            for name in files:
                file_path = os.path.join(root, name)
                if not os.path.islink(file_path):
                    os.chmod(file_path, file_mode())
                with open(file_path, "rb") as handle:
                    os.fsync(handle.fileno())
        if target.exists() or target.is_symlink():
            if _exchange(tmp, target):
                old = tmp          # the exchange left the previous output at the temporary name
            else:
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
            _fsync_dir(target.parent)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, target)
            _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
