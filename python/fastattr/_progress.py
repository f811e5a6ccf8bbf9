"""Progress of every stage: a tqdm bar on a terminal, a few plain lines in a log, or nothing.

Redrawn bars fill log files and CI output with carriage returns, so they are drawn only when
stderr is a terminal; elsewhere a stage prints one line when it starts, one every tenth of the
way (if it is slow enough for that to be news) and one when it ends.
``FASTATTR_PROGRESS=bar|lines|off`` forces a mode.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator

__all__ = ["make_progress", "progress_mode"]

MODES = ("bar", "lines", "off")
# A tenth reached sooner than this after the previous line is not printed: a stage of a few
# seconds logs its start and end only.
MIN_SECONDS_BETWEEN_LINES = 2.0


def progress_mode() -> str:
    """``FASTATTR_PROGRESS`` if it names a mode, else ``bar`` on a terminal and ``lines`` elsewhere."""
    forced = os.environ.get("FASTATTR_PROGRESS", "").strip().lower()
    if forced in MODES:
        return forced
    isatty = getattr(sys.stderr, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


class _Silent:
    """The no-op progress: the subset of tqdm's interface the stages use."""

    def __init__(self, iterable: Iterable[Any] | None = None) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        yield from self._iterable or ()

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _Lines(_Silent):
    """Plain lines on stderr: at the start, at each further tenth of ``total``, and at the end."""

    def __init__(self, iterable: Iterable[Any] | None, total: int | None, desc: str, unit: str,
                 initial: int) -> None:
        super().__init__(iterable)
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self._postfix = ""
        self._next_tenth = self._tenth() + 1
        self._done = False
        self._start = time.perf_counter()
        self._print()

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self._iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def _tenth(self) -> int:
        return self.n * 10 // self.total if self.total else 0

    def _print(self, suffix: str = "") -> None:
        self._last_line = time.perf_counter()
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        name = f"{self.desc}: " if self.desc else ""
        print(f"[fastattr] {name}{count} {self.unit}{self._postfix}{suffix}", file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._done:
            return
        if self.total is not None and self.n >= self.total:
            self.close()
        elif self._tenth() >= self._next_tenth:
            self._next_tenth = self._tenth() + 1
            if time.perf_counter() - self._last_line >= MIN_SECONDS_BETWEEN_LINES:
                self._print()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        values = {**(ordered_dict or {}), **kwargs}
        self._postfix = " (" + ", ".join(f"{k}={v}" for k, v in values.items()) + ")" if values else ""

    def close(self) -> None:
        # Also reached when the total is, so the last line comes even without a close().
        if not self._done:
            self._done = True
            self._print(f" in {time.perf_counter() - self._start:.1f} s")


def make_progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                  unit: str = "it", disable: bool = False, initial: int = 0, leave: bool = True) -> Any:
    """A progress tracker with tqdm's interface: iterate it or call ``update(n)``, then ``close()``.

    ``leave`` only matters to bars (``False`` erases the bar when done); lines stay in the log.

    Example:
        >>> with make_progress(total=3, desc="rows", unit="row") as bar:  # doctest: +SKIP
        ...     bar.update(3)  # in a log: "[fastattr] rows: 0/3 row", "[fastattr] rows: 3/3 row in 0.0 s"
        >>> sum(make_progress(range(4), desc="items", disable=True))
        6
    """
    mode = "off" if disable else progress_mode()
    if mode == "bar":
        from tqdm.auto import tqdm

        # disable=False said outright: the CLI sets TQDM_DISABLE for third-party bars (fastattr._quiet).
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, disable=False)
    if mode == "lines":
        return _Lines(iterable, total, desc, unit, initial)
    return _Silent(iterable)
