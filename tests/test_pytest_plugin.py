"""Tests of fastattr's pytest plugin (fastattr.pytest_plugin): inner pytest runs on the tiny bundle."""

from __future__ import annotations

import json
import os
from importlib.metadata import entry_points

import pytest

import _export_kit as kit

pytest_plugins = ["pytester"]

# What a product's latency test looks like: its own images and prompts, one helper call.
_PRODUCT_TEST = """
import numpy as np

IMAGES = [np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8) for seed in range(3)]
PROMPTS = ["a red square on grey", "a blue disc", "two green triangles"]


def test_latency_with_the_run_budgets(fastattr_latency):
    report = fastattr_latency(IMAGES, PROMPTS, k=5, rounds=20, warmup=2)
    assert report.queries == 20 and report.pairs == 3 and report.device == "cpu"


def test_latency_with_its_own_budget(fastattr_latency):
    fastattr_latency(IMAGES, PROMPTS, p50_ms=60_000, p95_ms=60_000, rounds=10, warmup=0)
"""

_GENEROUS = ["--fastattr-p50-ms", "60000", "--fastattr-p95-ms", "60000"]
_IMPOSSIBLE = ["--fastattr-p50-ms", "0.0001"]


@pytest.fixture(scope="module")
def bundle_args() -> list[str]:
    return ["--fastattr-bundle", str(kit.bundle()), "--fastattr-device", "cpu"]


@pytest.fixture
def product(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_attribution_latency=_PRODUCT_TEST)
    return pytester


def test_the_entry_point_registers_the_plugin():
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("fastattr") == "fastattr.pytest_plugin"


def test_the_plugin_knows_the_sdk_devices():
    from fastattr.onnx_embedder import DEVICES
    from fastattr.pytest_plugin import _DEVICES

    assert sorted(_DEVICES) == sorted(DEVICES)


def test_within_budget_passes_and_records_the_figures(product, bundle_args, tmp_path):
    saved = tmp_path / "bench.json"
    result = product.runpytest(*bundle_args, *_GENEROUS, f"--benchmark-json={saved}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*fastattr: bundle * on cpu, budgets p50 60000 ms, p95 60000 ms*",
                                 "*benchmark: 2 tests*", "*test_latency_with_the_run_budgets*"])
    info = {bench["name"]: bench["extra_info"] for bench in json.loads(saved.read_text())["benchmarks"]}
    figures = info["test_latency_with_the_run_budgets"]
    assert figures["budget_p50_ms"] == 60000 and figures["queries"] == 20 and figures["k"] == 5
    assert 0 < figures["p50_ms"] <= figures["p95_ms"]
    assert list(figures["stage_median_ms"]) == ["decode", "preprocess", "tokenize", "forward", "search", "assemble"]


def test_over_budget_fails_naming_p50_and_the_budget(product, bundle_args):
    result = product.runpytest(*bundle_args, *_IMPOSSIBLE)
    # The test that brings its own budget overrides the run's, so it still passes.
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "*fastattr query latency over budget: p50 * ms > budget 0.0001 ms*",
        "*p50 * ms   budget 0.0001 ms  OVER BUDGET*",
        "*p95 * ms   budget -*",
        "*per-stage medians (ms): decode *, preprocess *, tokenize *, forward *, search *, assemble *",
        "*20 queries over 3 (image, prompt) pairs, k=5, on cpu*",
        "*test_attribution_latency.py:*",  # the failure points at the product's own call
    ])


def test_benchmark_disable_runs_once_without_judging(pytester, bundle_args):
    # One cold query says nothing about latency: the check becomes a smoke test of the inputs.
    pytester.makepyfile(test_smoke="""
import numpy as np

def test_smoke(fastattr_latency):
    report = fastattr_latency([np.zeros((16, 16, 3), np.uint8)], ["a prompt"])
    assert report.queries == 1 and not report.checked and not report.over_budget
""")
    result = pytester.runpytest(*bundle_args, *_IMPOSSIBLE, "--benchmark-disable")
    result.assert_outcomes(passed=1)


def test_the_plugin_path_imports_no_torch(pytester, bundle_args):
    # A fresh interpreter: this process has torch loaded already (the bundle was built with it).
    pytester.makepyfile(test_heavy="""
import sys
import numpy as np

def test_no_heavy_modules(fastattr_latency):
    fastattr_latency([np.zeros((16, 16, 3), np.uint8)], ["a red square"], rounds=3, warmup=0)
    heavy = sorted(m for m in ("torch", "transformers", "diffusers", "onnx", "onnxscript") if m in sys.modules)
    assert heavy == []
""")
    result = pytester.runpytest_subprocess(*bundle_args, *_GENEROUS)
    result.assert_outcomes(passed=1)


def test_no_bundle_configured_skips_saying_how_to_configure(product):
    result = product.runpytest("-rs", *_GENEROUS)
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*no fastattr bundle configured: pass --fastattr-bundle PATH or set fastattr_bundle*"])


def test_without_pytest_benchmark_the_helper_skips_and_the_attributor_still_loads(product, bundle_args):
    product.makepyfile(test_uses_the_bundle="""
import numpy as np

def test_query(fastattr_attributor):
    assert len(fastattr_attributor.query(np.zeros((16, 16, 3), np.uint8), "a red square", k=3)) == 3
""")
    result = product.runpytest("-p", "no:benchmark", "-rs", *bundle_args, *_GENEROUS)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*fastattr_latency needs pytest-benchmark, which is not installed or is disabled*"])


def test_a_folder_that_is_not_a_bundle_is_an_error_at_setup(product, tmp_path):
    result = product.runpytest("--fastattr-bundle", str(tmp_path), *_GENEROUS)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([f"*fastattr_attributor cannot load --fastattr-bundle {tmp_path} on device auto: "
                                 "*has no manifest.json: not a bundle*"])
    assert "Benchmark fixture was not used" not in result.stdout.str()  # stopped before pytest-benchmark started


def test_ini_keys_configure_the_run_relative_to_the_ini_file(product):
    bundle = os.path.relpath(kit.bundle(), product.path)
    product.makeini(f"[pytest]\nfastattr_bundle = {bundle}\nfastattr_device = cpu\nfastattr_p50_ms = 0.0001\n")
    result = product.runpytest()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*p50 * ms > budget 0.0001 ms*"])


@pytest.mark.parametrize("args, ini, message", [
    (["--fastattr-p50-ms", "-3"], "", "--fastattr-p50-ms must be a positive number of milliseconds, got -3.0"),
    (["--fastattr-p95-ms", "nan"], "", "--fastattr-p95-ms must be a positive number of milliseconds, got nan"),
    ([], "fastattr_p95_ms = fast", "fastattr_p95_ms in * must be a number of milliseconds, got 'fast'"),
    ([], "fastattr_device = tpu", "fastattr_device in * must be one of ('auto', 'cuda', 'cpu'), got 'tpu'"),
])
def test_a_bad_option_is_a_usage_error(product, args, ini, message):
    product.makeini(f"[pytest]\n{ini}\n")
    result = product.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_bad_helper_arguments_are_input_errors(product, bundle_args):
    product.makepyfile(test_misuse="""
import pytest
from fastattr.errors import InputError

def test_mismatch(fastattr_latency):
    with pytest.raises(InputError, match="as many images as prompts"):
        fastattr_latency([b"x", b"y"], ["one prompt"])

def test_bad_budget(fastattr_latency):
    with pytest.raises(InputError, match="p50_ms must be None or a positive number"):
        fastattr_latency([b"x"], ["a prompt"], p50_ms=-1)
""")
    result = product.runpytest(*bundle_args, "test_misuse.py")
    result.assert_outcomes(passed=2)
