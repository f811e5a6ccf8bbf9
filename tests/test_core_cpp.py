"""The C++ core's own test program (cpp/tests/core_tests.cpp), built with CMake and run by ctest:
once plainly and once under AddressSanitizer + UndefinedBehaviorSanitizer, which also replays a
few hundred corrupted index files through open, search and verify."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SOURCE = Path(__file__).resolve().parents[1] / "cpp" / "tests"
_CMAKE = shutil.which("cmake", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
pytestmark = pytest.mark.skipif(_CMAKE is None or shutil.which("c++") is None,
                                reason="needs cmake and a C++ compiler")


def _build(build_dir: Path, *options: str) -> Path:
    configure = subprocess.run([_CMAKE, "-S", str(SOURCE), "-B", str(build_dir), *options],
                               capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    build = subprocess.run([_CMAKE, "--build", str(build_dir), "-j", "2"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return build_dir


def _ctest(build_dir: Path) -> str:
    ctest = Path(_CMAKE).with_name("ctest")
    run = subprocess.run([str(ctest), "--test-dir", str(build_dir), "--output-on-failure", "-V"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run.stdout


def test_core_tests_pass(tmp_path: Path) -> None:
    out = _ctest(_build(tmp_path / "build"))
    assert "0 check(s) failed" in out and "FAIL " not in out, out[-3000:]


def _corrupted_index_files(folder: Path, n: int) -> list[Path]:
    """A valid index and n copies with random header words and data bytes overwritten."""
    from fastattr import index

    folder.mkdir()
    good = folder / "good.fai"
    rng = np.random.default_rng(7)
    index.build(good, rng.standard_normal((60, 24)).astype(np.float32), np.arange(60) * 5, rerank_vectors=True)
    seed = good.read_bytes()
    files = [good]
    for i in range(n):
        data = bytearray(seed)
        for _ in range(int(rng.integers(1, 4))):
            where = int(rng.integers(8, 184)) & ~7 if rng.random() < 0.7 else int(rng.integers(4096, len(data) - 8))
            data[where:where + 8] = int(rng.integers(0, 1 << 63)).to_bytes(8, "little") if rng.random() < 0.5 \
                else int(rng.choice([0, 1, 64, 4096, len(data), len(data) - 64, 2**32])).to_bytes(8, "little")
        if rng.random() < 0.1:
            data = data[:int(rng.integers(0, len(data)))]
        path = folder / f"mutant-{i}.fai"
        path.write_bytes(bytes(data))
        files.append(path)
    return files


def test_core_tests_and_corrupted_files_under_asan_ubsan(tmp_path: Path) -> None:
    build_dir = _build(tmp_path / "build-asan", "-DFASTATTR_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=Debug")
    out = _ctest(build_dir)
    assert "0 check(s) failed" in out, out[-3000:]
    corpus = tmp_path / "corpus"
    _corrupted_index_files(corpus, 300)
    env = {**os.environ, "ASAN_OPTIONS": "abort_on_error=1:detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1"}
    replay = subprocess.run([str(build_dir / "core_tests"), "replay", "--reseal", str(corpus)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert replay.returncode == 0, replay.stdout[-2000:] + replay.stderr[-4000:]
    summary = replay.stdout.strip().splitlines()[-1]
    assert summary.startswith("replayed 301 files (header resealed):"), summary
    accepted = int(summary.split(": ")[1].split()[0])
    assert 1 <= accepted < 301, summary   # the valid file passes; the mutants are not all accepted
