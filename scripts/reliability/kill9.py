"""Crash safety: kill -9 writers at random moments over an existing output at the same path.

Usage:
    python scripts/reliability/kill9.py --work /tmp/fastattr-kill9 --trials 100 \
        [--embedder runs/export --dataset runs/world]     # bundle trials need an exported embedder
        [--model runs/t2i]                                # curation trials need a pipeline folder too

Each trial starts a child process that replaces an existing output (a bare index of 200,000 × 64
vectors, or a bundle when ``--embedder``/``--dataset`` are given, alternating), kills it with
SIGKILL after a random delay within the write's measured duration, and checks that the path holds
either the old output or the new one, complete and loadable (an index answers a search; a bundle
passes ``open_bundle(verify="full")``). Then a clean write runs and the folder must hold no
temporaries. With ``--model``, curation trials kill a small ``teacher curate`` run, resume it, and
compare the teacher set with an undisturbed run's, array by array. Prints one JSON summary: trials
per kind and outcome.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD_INDEX = """
import sys, numpy as np
from fastattr import index
seed = int(sys.argv[2])
v = np.random.default_rng(seed).standard_normal((200_000, 64)).astype(np.float32)
index.build(sys.argv[1], v, np.arange(len(v), dtype=np.uint64) + seed)
"""

CHILD_BUNDLE = """
import sys
from fastattr.bundle_build import build_bundle
build_bundle(sys.argv[1], embedder=sys.argv[3], dataset=sys.argv[4], evaluation={"seed": int(sys.argv[2])},
             progress=False)
"""


CURATE_ARGS = ["--train-queries", "4", "--test-queries", "1", "--candidates-k", "32", "--subsample-m", "16",
               "--timesteps", "2", "--query-draws", "4", "--workers", "1", "--sample-steps", "4", "--threads", "1"]


def start(command: list[str]) -> subprocess.Popen:
    """A child whose stderr goes to a temporary file, not a pipe: a pipe nobody reads while waiting
    fills up (progress bars, warnings) and blocks the child forever."""
    log = tempfile.TemporaryFile()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    child.log = log  # type: ignore[attr-defined]
    return child


def stderr_of(child: subprocess.Popen) -> str:
    child.log.seek(0)  # type: ignore[attr-defined]
    return child.log.read().decode(errors="replace")[-4000:]  # type: ignore[attr-defined]


def curate_child(out: Path, args: argparse.Namespace) -> subprocess.Popen:
    return start([sys.executable, "-m", "fastattr", "teacher", "curate", "--dataset", str(args.dataset),
                  "--model", str(args.model), "--out", str(out), *CURATE_ARGS])


def same_teacher_set(a: Path, b: Path) -> bool:
    import numpy as np

    with np.load(a / "pairs.npz") as x, np.load(b / "pairs.npz") as y:
        return all(np.array_equal(x[k], y[k]) for k in ("query_id", "item_id", "rank", "score"))


def digest(path: Path) -> str:
    """What identifies an output: the index header + ids tail, or the bundle manifest."""
    target = path / "manifest.json" if path.is_dir() else path
    return hashlib.sha256(target.read_bytes()).hexdigest()


def loads(path: Path, kind: str) -> bool:
    try:
        if kind == "index":
            import numpy as np

            from fastattr import index

            found = index.open(path)
            found.verify()
            ids, _ = found.search(np.ones(64, np.float32), k=3)
            return len(ids) == 3
        from fastattr.bundle import open_bundle

        open_bundle(path, verify="full")
        return True
    except Exception as exc:  # noqa: BLE001 - any failure to load is the outcome we count
        print(f"  load failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False


def temporaries(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def run_child(kind: str, path: Path, seed: int, args: argparse.Namespace) -> subprocess.Popen:
    code = CHILD_INDEX if kind == "index" else CHILD_BUNDLE
    extra = [] if kind == "index" else [str(args.embedder), str(args.dataset)]
    return start([sys.executable, "-c", code, str(path), str(seed), *extra])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/fastattr-kill9")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--embedder", default=None)
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--model", default=None, help="pipeline folder: adds curation trials")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    writer_kinds = ["index", "bundle"] if args.embedder and args.dataset else ["index"]
    kinds = writer_kinds + (["curate"] if args.model and args.dataset else [])
    rng = random.Random(args.seed)
    paths = {"index": work / "items.fai", "bundle": work / "bundle", "curate": work / "teacher"}
    durations = {}
    for kind in kinds:   # an existing output at the path, and how long one write takes
        t0 = time.perf_counter()
        child = curate_child(work / "teacher-reference", args) if kind == "curate" else run_child(kind, paths[kind], 1, args)
        if child.wait() != 0:
            raise SystemExit(f"a clean {kind} write failed: {stderr_of(child)}")
        durations[kind] = time.perf_counter() - t0
    outcomes: dict[str, dict[str, int]] = {k: {} for k in kinds}
    for trial in range(args.trials):
        kind = kinds[trial % len(kinds)]
        path = paths[kind]
        if kind == "curate":
            import shutil

            shutil.rmtree(path, ignore_errors=True)
            child = curate_child(path, args)
            time.sleep(rng.uniform(0.05, 1.0) * durations[kind])
            killed = child.poll() is None
            if killed:
                os.kill(child.pid, signal.SIGKILL)
            child.wait()
            resumed = curate_child(path, args)
            if resumed.wait() != 0:
                outcome = f"{'killed' if killed else 'finished'}, resume FAILED"
                print(f"  resume failed: {stderr_of(resumed)[-1500:]}", file=sys.stderr)
            else:
                same = same_teacher_set(path, work / "teacher-reference")
                if not same:   # kept for a post-mortem
                    shutil.copytree(path, work / f"different-{trial}")
                outcome = f"{'killed' if killed else 'finished'}, resumed {'equal to' if same else 'DIFFERENT FROM'} undisturbed"
            outcomes[kind][outcome] = outcomes[kind].get(outcome, 0) + 1
            print(f"trial {trial}: {kind}: {outcome}", file=sys.stderr)
            continue
        before = digest(path)
        child = run_child(kind, path, 100 + trial, args)
        time.sleep(rng.uniform(0.05, 1.3) * durations[kind])   # some kills land after the write finished
        killed = child.poll() is None
        if killed:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
        after = digest(path) if path.exists() else None
        ok = after is not None and loads(path, kind)
        state = "old" if after == before else "new" if after is not None else "missing"
        left = temporaries(path)
        outcome = f"{'killed' if killed else 'finished'}, {state if ok else 'BROKEN ' + state}" + \
                  (f", {len(left)} temporaries left" if left else "")
        outcomes[kind][outcome] = outcomes[kind].get(outcome, 0) + 1
        # The next clean write removes what the killed one left.
        clean = run_child(kind, path, 1, args)
        if clean.wait() != 0:
            raise SystemExit(f"the clean {kind} write after trial {trial} failed: {stderr_of(clean)}")
        if temporaries(path):
            outcomes[kind]["temporaries after the next clean write"] = \
                outcomes[kind].get("temporaries after the next clean write", 0) + 1
        print(f"trial {trial}: {kind}: {outcome}", file=sys.stderr)
    print(json.dumps({"trials": args.trials, "write_seconds": {k: round(v, 2) for k, v in durations.items()},
                      "outcomes": outcomes, "cpus": os.cpu_count(), "load_avg": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
