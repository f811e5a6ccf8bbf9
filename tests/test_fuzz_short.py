"""The short run of the loader fuzzers (fuzz/loaders.py): a few seconds each, no finding allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HARNESS = Path(__file__).resolve().parents[1] / "fuzz" / "loaders.py"


@pytest.mark.parametrize("target", ["index", "bundle"])
def test_short_fuzz_run_finds_nothing(target: str, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(HARNESS), target, "-max_total_time=12", "-timeout=10",
                          str(tmp_path / "corpus")], capture_output=True, text=True, timeout=120)
    tail = run.stderr[-2000:]
    assert run.returncode == 0, tail
    done = [line for line in run.stderr.splitlines() if line.startswith("Done ")]
    assert done and int(done[-1].split()[1]) > 1000, tail   # "Done N runs in S second(s)"
