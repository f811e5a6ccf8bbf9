"""fastattr.index under stress: random corruption, concurrent searches, interrupted writers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from fastattr import index
from fastattr.errors import IndexFormatError

# Runs in a child process, so that a crash (segfault, abort) fails the test instead of killing pytest.
_CORRUPTION_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from fastattr import index
    from fastattr.errors import IndexFormatError, IndexQueryError

    source, scratch, trials, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    original = open(source, "rb").read()
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((3, 24)).astype(np.float32)
    ids = index.open(source).ids.copy()
    outcome = {"open": 0, "verify": 0, "undetected": 0, "searched": 0}
    for trial in range(trials):
        data = bytearray(original)
        # Half the trials hit the header (where offsets live), the rest anywhere in the file.
        limit = 4096 if trial % 2 == 0 else len(data)
        for _ in range(int(rng.integers(1, 4))):
            offset = int(rng.integers(0, limit))
            data[offset] ^= int(rng.integers(1, 256))
        with open(scratch, "wb") as handle:
            handle.write(bytes(data))
        try:
            opened = index.open(scratch)
        except IndexFormatError:
            outcome["open"] += 1
            continue
        for call in (
            lambda: opened.search(queries[0], 5),
            lambda: opened.search_batch(queries, 7, exclude=ids[:4], threads=2),
            lambda: opened.search(queries[1], 3, rerank=0, threads=1),
            lambda: opened.warmup(),
        ):
            try:
                call()
                outcome["searched"] += 1
            except (IndexFormatError, IndexQueryError):
                pass
        try:
            opened.verify()
            outcome["undetected"] += 1
        except IndexFormatError:
            outcome["verify"] += 1
    print(json.dumps(outcome))
    """
)


def test_random_corruption_never_crashes(tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).standard_normal((300, 24)).astype(np.float32)
    index.build(tmp_path / "good.fai", vectors, np.arange(1000, 1300, dtype=np.uint64))
    result = subprocess.run(
        [sys.executable, "-c", _CORRUPTION_SCRIPT, str(tmp_path / "good.fai"), str(tmp_path / "bad.fai"), "400", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"the process died (code {result.returncode}): {result.stderr[-2000:]}"
    outcome = json.loads(result.stdout)
    assert outcome["open"] + outcome["verify"] == 400, outcome  # every corruption is detected
    assert outcome["undetected"] == 0
    assert outcome["open"] >= 200 and outcome["searched"] > 0  # both paths were exercised


def test_concurrent_searches_match_serial(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((20000, 64)).astype(np.float32)
    index.build(tmp_path / "c.fai", vectors, np.arange(20000, dtype=np.uint64))
    found = index.open(tmp_path / "c.fai")
    queries = rng.standard_normal((8, 6, 64)).astype(np.float32)

    def run(worker: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for round_ in range(3):
            out.append(found.search(queries[worker, round_], 10, threads=2))
            out.append(found.search_batch(queries[worker], 10, exclude=[worker, 7], threads=None))
            out.append(found.search(queries[worker, 5], 10, threads=1, rerank=0))
        return out

    serial = [run(worker) for worker in range(8)]
    parallel: list = [None] * 8
    errors: list[BaseException] = []

    def target(worker: int) -> None:
        try:
            parallel[worker] = run(worker)
        except BaseException as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for worker in range(8):
        for (ids_a, scores_a), (ids_b, scores_b) in zip(serial[worker], parallel[worker]):
            np.testing.assert_array_equal(ids_a, ids_b)
            np.testing.assert_array_equal(scores_a, scores_b)


def test_exception_inside_writer_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="stop"):
        with index.IndexWriter(tmp_path / "a.fai", 8) as writer:
            writer.append(np.ones((10, 8), np.float32), np.arange(10))
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_failed_build_keeps_the_previous_file(tmp_path: Path) -> None:
    index.build(tmp_path / "a.fai", np.ones((3, 8), np.float32), [1, 2, 3])
    before = (tmp_path / "a.fai").read_bytes()
    with pytest.raises(IndexFormatError, match="id 1 appears twice"):
        index.build(tmp_path / "a.fai", np.ones((3, 8), np.float32), [1, 1, 3])
    assert (tmp_path / "a.fai").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.fai"]
    index.build(tmp_path / "a.fai", np.zeros((2, 8), np.float32), [5, 6])  # replaced atomically
    assert index.open(tmp_path / "a.fai").ids.tolist() == [5, 6]


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from fastattr import index
    writer = index.IndexWriter(sys.argv[1], 32)
    for start in range(0, 4000, 1000):
        writer.append(np.ones((1000, 32), np.float32), np.arange(start, start + 1000))
    os.kill(os.getpid(), signal.SIGKILL)  # dies mid-build, with no chance to clean up
    """
)


def test_killed_writer_never_leaves_a_partial_index(tmp_path: Path) -> None:
    target = tmp_path / "k.fai"
    result = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL
    assert not target.exists()
    # Only a hidden temporary file can remain, which no reader would open under the target name.
    assert all(p.name.startswith(".k.fai.tmp-") for p in tmp_path.iterdir())


_FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from fastattr import index
    found = index.open(sys.argv[1])
    query = np.ones(16, np.float32)
    before = found.search(query, 5, threads=2)[0].tolist()  # starts the thread pool
    pid = os.fork()
    if pid == 0:  # the child has no pool threads; it must build its own, not wait forever
        os._exit(0 if found.search(query, 5, threads=2)[0].tolist() == before else 3)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_search_after_fork(tmp_path: Path) -> None:
    vectors = np.random.default_rng(5).standard_normal((5000, 16)).astype(np.float32)
    index.build(tmp_path / "f.fai", vectors, np.arange(5000))
    result = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, str(tmp_path / "f.fai")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def test_in_place_overwrite_is_refused_but_a_rename_is_served(tmp_path: Path) -> None:
    import os

    from fastattr.errors import IndexQueryError

    path = tmp_path / "a.fai"
    vectors = np.eye(8, dtype=np.float32)
    index.build(path, vectors, np.arange(8))
    opened = index.open(path)
    assert opened.search(vectors[3], k=1)[0].tolist() == [3]
    # Replaced by rename (how fastattr writes): the old mapping stays valid and is served.
    index.build(path, vectors[::-1].copy(), np.arange(8))
    assert opened.search(vectors[3], k=1)[0].tolist() == [3]
    # Overwritten in place (cp, rsync --inplace): refused before the mapping is read.
    fresh = index.open(path)
    data = path.read_bytes()
    with open(path, "r+b") as handle:
        handle.truncate(len(data) // 2)
    os.utime(path, ns=(1, 1))
    with pytest.raises(IndexQueryError, match="modified in place"):
        fresh.search(vectors[3], k=1)
