"""Latency measurement: repeated calls, percentiles in milliseconds, and the machine load at the time."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["Latency", "time_calls", "time_interleaved", "summarize", "machine_info", "loadavg"]


def loadavg() -> list[float]:
    """``os.getloadavg()`` rounded, or [] where the platform has none.

    Example:
        >>> len(loadavg()) in (0, 3)
        True
    """
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


@dataclass(frozen=True)
class Latency:
    """Percentiles of repeated timings, in milliseconds, with the load average when they ended.

    Example:
        >>> summarize([0.001, 0.002, 0.003]).p50_ms
        2.0
    """

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    loadavg: list[float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def summarize(seconds: list[float] | np.ndarray) -> Latency:
    """Turn durations in seconds into a :class:`Latency` (p99 by linear interpolation).

    Example:
        >>> summarize([0.01] * 5).p99_ms
        10.0
    """
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        raise ValueError("no timings to summarize")
    return Latency(
        n=int(ms.size),
        p50_ms=round(float(np.percentile(ms, 50)), 4),
        p99_ms=round(float(np.percentile(ms, 99)), 4),
        mean_ms=round(float(ms.mean()), 4),
        min_ms=round(float(ms.min()), 4),
        max_ms=round(float(ms.max()), 4),
        loadavg=loadavg(),
    )


def time_calls(fn: Callable[[], Any], *, n: int, warmup: int = 2, max_seconds: float | None = None) -> Latency:
    """Call ``fn`` ``warmup`` times untimed, then ``n`` times timed (stopping early after ``max_seconds``).

    Example:
        >>> time_calls(lambda: sum(range(100)), n=5).n
        5
    """
    for _ in range(warmup):
        fn()
    durations: list[float] = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - start > max_seconds and len(durations) >= 3:
            break
    return summarize(durations)


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, core count, library versions, load."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "loadavg": loadavg(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        import fastattr.index as findex

        info["index_kernel"] = findex.kernel()
    except (ImportError, AttributeError):
        info["index_kernel"] = None
    return info


def time_interleaved(fns: dict[str, Callable[[], Any]], *, n: int, warmup: int = 2,
                     max_seconds: float | None = None, block: int = 1) -> dict[str, Latency]:
    """Time several callables round-robin, so that a change of machine load hits all of them alike.

    Ratios between the results are then fair even on a shared machine. With ``block`` > 1 each
    turn calls one function ``block`` times in a row: thread pools that spin after a call (ONNX
    Runtime's, torch's OpenMP) then slow down only the first call of a block, not every call.

    Example:
        >>> out = time_interleaved({"a": lambda: 1, "b": lambda: 2}, n=3)
        >>> sorted(out), out["a"].n
        (['a', 'b'], 3)
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    durations: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    block = max(1, int(block))
    for _ in range(-(-n // block)):
        for name, fn in fns.items():
            for _ in range(min(block, n - len(durations[name]))):
                t0 = time.perf_counter()
                fn()
                durations[name].append(time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - start > max_seconds and len(durations[name]) >= 3:
            break
    return {name: summarize(values) for name, values in durations.items()}
