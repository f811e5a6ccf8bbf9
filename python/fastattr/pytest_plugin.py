"""pytest plugin: latency budgets for fastattr queries, checked in a product's own test suite.

pytest loads it wherever fastattr is installed (the ``pytest11`` entry point ``fastattr``), and it
does nothing until a test asks for one of its fixtures:

    fastattr_attributor   the configured bundle, loaded once per session (skips when none is configured)
    fastattr_latency      a callable that times ``Attributor.query`` through pytest-benchmark and
                          fails the test when p50/p95 exceed the budgets

Options (each also an ini key, ``--fastattr-p50-ms`` ↔ ``fastattr_p50_ms``): ``--fastattr-bundle``,
``--fastattr-device``, ``--fastattr-p50-ms``, ``--fastattr-p95-ms``. docs/sdk.md has a complete example.

Like the runtime SDK it never imports torch; pytest-benchmark is optional (without it
``fastattr_latency`` skips, saying why).
"""

from __future__ import annotations

import itertools
import math
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pytest

from .errors import FastattrError, InputError

__all__ = ["LatencyCheck", "LatencyReport"]

# Attributor.load's devices; not imported from fastattr.onnx_embedder so that pytest's start-up,
# which loads this plugin in every run, stays free of numpy and Pillow (a test checks they agree).
_DEVICES = ("auto", "cuda", "cpu")
# pytest-benchmark registers itself under this name; `-p no:benchmark` removes it.
_BENCHMARK_PLUGIN = "benchmark"


@dataclass(frozen=True)
class _Settings:
    bundle: Path | None
    bundle_source: str  # where the path came from, for error messages
    device: str
    p50_ms: float | None
    p95_ms: float | None


_SETTINGS = pytest.StashKey[_Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastattr", "fastattr latency checks (fixtures fastattr_attributor, fastattr_latency)")
    group.addoption("--fastattr-bundle", metavar="PATH", default=None,
                    help="bundle folder that fastattr_attributor loads (ini: fastattr_bundle)")
    group.addoption("--fastattr-device", choices=_DEVICES, default=None,
                    help="device for that bundle: auto (default), cuda or cpu (ini: fastattr_device)")
    group.addoption("--fastattr-p50-ms", metavar="MS", type=float, default=None,
                    help="fail fastattr_latency checks whose median query exceeds MS (ini: fastattr_p50_ms)")
    group.addoption("--fastattr-p95-ms", metavar="MS", type=float, default=None,
                    help="fail fastattr_latency checks whose 95th-percentile query exceeds MS (ini: fastattr_p95_ms)")
    parser.addini("fastattr_bundle", "bundle folder for fastattr_attributor, relative to the ini file", default="")
    parser.addini("fastattr_device", "device for the fastattr bundle: auto, cuda or cpu", default="")
    parser.addini("fastattr_p50_ms", "p50 budget (ms) of fastattr_latency checks", default="")
    parser.addini("fastattr_p95_ms", "p95 budget (ms) of fastattr_latency checks", default="")


def _ini_dir(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath is not None else config.rootpath


def _ini_label(config: pytest.Config, name: str) -> str:
    # An ini value may come from the file or from `-o name=value`; name the file when there is one.
    return f"{name} in {config.inipath}" if config.inipath is not None else f"ini option {name}"


def _budget(config: pytest.Config, name: str) -> float | None:
    option = "--" + name.replace("_", "-")
    value = config.getoption(name)
    source = option
    if value is None:
        raw = str(config.getini(name)).strip()
        if not raw:
            return None
        source = _ini_label(config, name)
        try:
            value = float(raw)
        except ValueError:
            raise pytest.UsageError(f"{source} must be a number of milliseconds, got {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise pytest.UsageError(f"{source} must be a positive number of milliseconds, got {value!r}")
    return value


def _read_settings(config: pytest.Config) -> _Settings:
    bundle: Path | None = None
    source = ""
    if config.getoption("fastattr_bundle"):
        # A command-line path means what it means in the shell that typed it.
        bundle = config.invocation_params.dir / Path(config.getoption("fastattr_bundle")).expanduser()
        source = "--fastattr-bundle"
    elif str(config.getini("fastattr_bundle")).strip():
        bundle = _ini_dir(config) / Path(str(config.getini("fastattr_bundle")).strip()).expanduser()
        source = _ini_label(config, "fastattr_bundle")
    device = config.getoption("fastattr_device") or str(config.getini("fastattr_device")).strip() or "auto"
    if device not in _DEVICES:
        raise pytest.UsageError(f"{_ini_label(config, 'fastattr_device')} must be one of {_DEVICES}, got {device!r}")
    return _Settings(bundle, source, device, _budget(config, "fastattr_p50_ms"), _budget(config, "fastattr_p95_ms"))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SETTINGS] = _read_settings(config)
    # The latency fixture names `benchmark` as a dependency, so that --benchmark-only/--benchmark-skip
    # see it; it can only do that where pytest-benchmark is active, hence a holder chosen here.
    with_benchmark = config.pluginmanager.hasplugin(_BENCHMARK_PLUGIN)
    config.pluginmanager.register(_latency_fixtures(with_benchmark), "fastattr-latency")


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash.get(_SETTINGS, None)
    if settings is None or (settings.bundle is None and settings.p50_ms is None and settings.p95_ms is None):
        return None
    return (f"fastattr: bundle {settings.bundle or '(none)'} on {settings.device}, "
            f"budgets p50 {_ms(settings.p50_ms)}, p95 {_ms(settings.p95_ms)}")


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def fastattr_attributor(pytestconfig: pytest.Config) -> Any:
    """The configured bundle's ``fastattr.Attributor``, loaded once per session."""
    settings = pytestconfig.stash[_SETTINGS]
    if settings.bundle is None:
        pytest.skip("no fastattr bundle configured: pass --fastattr-bundle PATH or set fastattr_bundle in the pytest ini")
    from .attributor import Attributor

    try:
        return Attributor.load(settings.bundle, device=settings.device)
    except FastattrError as error:
        problem = str(error)
    # A wrong path or device is the run's configuration, not the test's: no traceback into fastattr.
    pytest.fail(f"fastattr_attributor cannot load {settings.bundle_source} {settings.bundle} "
                f"on device {settings.device}: {problem}", pytrace=False)


def _latency_fixtures(with_benchmark: bool) -> types.ModuleType:
    """A plugin module holding the ``fastattr_latency`` fixture that fits this run."""
    holder = types.ModuleType("fastattr.pytest_plugin.latency")
    if with_benchmark:
        # fastattr_attributor before benchmark: a skip or a bad bundle then stops the test before
        # pytest-benchmark starts (which would warn that its fixture went unused).
        @pytest.fixture
        def fastattr_latency(fastattr_attributor: Any, benchmark: Any, pytestconfig: pytest.Config) -> LatencyCheck:
            """Times ``fastattr_attributor.query`` with pytest-benchmark and checks the latency budgets."""
            return LatencyCheck(fastattr_attributor, benchmark, pytestconfig.stash[_SETTINGS])
    else:
        @pytest.fixture
        def fastattr_latency() -> LatencyCheck:
            """Skips: pytest-benchmark is not active in this run."""
            pytest.skip("fastattr_latency needs pytest-benchmark, which is not installed or is disabled "
                        "(-p no:benchmark); install it with `pip install pytest-benchmark`")
    holder.fastattr_latency = fastattr_latency  # type: ignore[attr-defined]
    return holder


# ---------------------------------------------------------------------- the latency check


def _ms(value: float | None) -> str:
    # :g keeps a budget as written (25 ms, 0.5 ms); measurements are rounded before they get here.
    return "-" if value is None else f"{value:g} ms"


@dataclass(frozen=True)
class LatencyReport:
    """What one ``fastattr_latency(...)`` call measured; also stored in ``benchmark.extra_info``."""

    p50_ms: float
    p95_ms: float
    stage_median_ms: dict[str, float]  # Attributor.STAGES, in query order
    queries: int
    pairs: int
    k: int
    device: str
    budget_p50_ms: float | None = None
    budget_p95_ms: float | None = None
    checked: bool = True  # False under --benchmark-disable: one cold query says nothing about latency
    over_budget: list[str] = field(default_factory=list)

    def headline(self) -> str:
        """The exceeded budgets in one line, e.g. "p50 31.20 ms > budget 25.00 ms"."""
        measured = {"p50": (self.p50_ms, self.budget_p50_ms), "p95": (self.p95_ms, self.budget_p95_ms)}
        return ", ".join(f"{name} {measured[name][0]:.2f} ms > budget {_ms(measured[name][1])}" for name in self.over_budget)

    def summary(self) -> str:
        """Readable lines: p50/p95 against their budgets, then the per-stage medians."""
        lines = []
        for name, value, budget in (("p50", self.p50_ms, self.budget_p50_ms), ("p95", self.p95_ms, self.budget_p95_ms)):
            verdict = "" if budget is None else ("  OVER BUDGET" if name in self.over_budget else "  ok")
            lines.append(f"  {name} {value:8.2f} ms   budget {_ms(budget)}{verdict}")
        stages = ", ".join(f"{stage} {ms:.2f}" for stage, ms in self.stage_median_ms.items())
        lines.append(f"  per-stage medians (ms): {stages}")
        lines.append(f"  {self.queries} queries over {self.pairs} (image, prompt) pairs, k={self.k}, on {self.device}")
        return "\n".join(lines)


def _check_budget(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be None or a positive number of milliseconds, got {value!r}")
    return float(value)


def _check_count(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{name} must be an int of at least {least}, got {value!r}")
    return value


class LatencyCheck:
    """The ``fastattr_latency`` fixture's value: call it once per test with the product's own inputs."""

    def __init__(self, attributor: Any, benchmark: Any, settings: _Settings) -> None:
        self._attributor = attributor
        self._benchmark = benchmark
        self._settings = settings
        self._used = False

    def __call__(
        self,
        images: Sequence[Any],
        prompts: Sequence[str],
        *,
        k: int = 10,
        p50_ms: float | None = None,
        p95_ms: float | None = None,
        rounds: int = 100,
        warmup: int = 5,
    ) -> LatencyReport:
        """Time ``rounds`` queries cycling through the (image, prompt) pairs; fail when over budget.

        Args:
            images: what ``Attributor.query`` accepts (paths, bytes, PIL images, arrays), one per prompt.
            prompts: the generation prompts.
            k: results per query, as the product asks for them.
            p50_ms, p95_ms: budgets for this call; None uses --fastattr-p50-ms/--fastattr-p95-ms
                (or the ini keys), and no budget at all means measure and record only.
            rounds: timed queries; warmup: untimed queries before them (session start-up, caches).

        Returns:
            The LatencyReport (also in ``benchmark.extra_info``).
        """
        __tracebackhide__ = True  # a failure points at the test's call, not at this helper
        if self._used:
            raise pytest.UsageError("fastattr_latency can be called once per test (pytest-benchmark times one "
                                    "thing per test); parametrize the test to check several input sets")
        self._used = True
        if isinstance(prompts, str):
            raise InputError("fastattr_latency takes a list of prompts (one per image), not a single str")
        images, prompts = list(images), list(prompts)
        if not images or len(images) != len(prompts):
            raise InputError(f"fastattr_latency needs as many images as prompts, at least one; "
                             f"got {len(images)} images and {len(prompts)} prompts")
        budget_p50 = self._settings.p50_ms if p50_ms is None else _check_budget("p50_ms", p50_ms)
        budget_p95 = self._settings.p95_ms if p95_ms is None else _check_budget("p95_ms", p95_ms)
        rounds = _check_count("rounds", rounds, 1)
        warmup = _check_count("warmup", warmup, 0)
        attributor = self._attributor

        pairs = list(zip(images, prompts))
        for image, prompt in itertools.islice(itertools.cycle(pairs), warmup):
            attributor.query(image, prompt, k=k)
        samples: list[dict[str, float]] = []
        upcoming = itertools.cycle(pairs)

        def next_pair() -> tuple[tuple[Any, str], dict[str, Any]]:
            return next(upcoming), {}

        def timed_query(image: Any, prompt: str) -> None:
            timings: dict[str, float] = {}
            attributor.query(image, prompt, k=k, timings=timings)
            samples.append(timings)

        self._benchmark.pedantic(timed_query, setup=next_pair, rounds=rounds, iterations=1, warmup_rounds=0)
        # pedantic runs the timed rounds first; --benchmark-cprofile adds untimed calls after them.
        report = _report(samples[:rounds], len(pairs), k, attributor.device, budget_p50, budget_p95,
                         checked=not self._benchmark.disabled)
        self._benchmark.extra_info.update({
            "p50_ms": report.p50_ms, "p95_ms": report.p95_ms, "stage_median_ms": report.stage_median_ms,
            "budget_p50_ms": budget_p50, "budget_p95_ms": budget_p95, "queries": report.queries,
            "k": k, "device": report.device,
        })
        if report.over_budget:
            pytest.fail(f"fastattr query latency over budget: {report.headline()}\n{report.summary()}")
        return report


def _report(samples: list[dict[str, float]], pairs: int, k: int, device: str,
            budget_p50: float | None, budget_p95: float | None, *, checked: bool) -> LatencyReport:
    import numpy as np

    from .attributor import STAGES

    totals = np.array([sample["total"] for sample in samples]) * 1e3
    p50, p95 = (round(float(value), 4) for value in np.percentile(totals, [50, 95]))
    stages = {stage: round(float(np.median([sample[stage] for sample in samples])) * 1e3, 4) for stage in STAGES}
    over = []
    if checked:
        over = [name for name, value, budget in (("p50", p50, budget_p50), ("p95", p95, budget_p95))
                if budget is not None and value > budget]
    return LatencyReport(p50, p95, stages, len(samples), pairs, k, device, budget_p50, budget_p95, checked, over)
