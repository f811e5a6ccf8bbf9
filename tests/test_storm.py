"""The query storm (scripts/reliability/storm.py) at a small size, and its comparison's ability to fail."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import _export_kit as kit

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reliability" / "storm.py"


def _storm_module():
    spec = importlib.util.spec_from_file_location("storm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_storm_threads_and_processes_equal_serial(tmp_path: Path) -> None:
    out = tmp_path / "storm.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--bundle", str(kit.bundle()), "--queries", "400",
                          "--threads", "8", "--processes", "4", "--index-rows", "20000", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert [r["target"].split(" ")[0] for r in summary["results"]] == ["Attributor", "index", "index"]
    assert all(r["queries"] == 400 and r["mismatches"] == 0 and not r["errors"] for r in summary["results"])


def test_storm_counts_a_wrong_answer_and_an_exception() -> None:
    storm = _storm_module()
    serial = [(np.array([i], np.uint64), np.array([0.5], np.float32)) for i in range(50)]

    def answer(i: int):
        if i == 7:
            raise RuntimeError("boom")
        if i == 9:   # same id, score one ulp off: bit-for-bit means this is a mismatch
            return serial[i][0], np.nextafter(serial[i][1], np.float32(1))
        return serial[i]

    mismatches, _, errors = storm._storm(50, 8, answer, serial)
    assert mismatches == 2
    assert errors == ["query 7: RuntimeError: boom"]
