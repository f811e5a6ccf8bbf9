"""Coverage-guided fuzzing (atheris) of the two loaders that read files from elsewhere.

Usage:
    python fuzz/loaders.py index  -atheris_runs=1000000 [CORPUS_DIR]
    python fuzz/loaders.py bundle -atheris_runs=100000  [CORPUS_DIR]
    python fuzz/loaders.py index  -max_total_time=15          # the short run of the test suite

``index``: the bytes are written as an index file, opened, verified and searched. ``bundle``: the
bytes replace a valid bundle's ``manifest.json`` and the bundle is opened (``verify="sizes"``) and
queried. A ``FastattrError`` is the expected outcome of bad input; any other exception, a crash or
a hang is a finding. Seeds: a valid index file and a valid manifest, written on first run.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import numpy as np

    from fastattr import index
    from fastattr.bundle import open_bundle
    from fastattr.errors import FastattrError

_WORK = Path(tempfile.mkdtemp(prefix="fastattr-fuzz-"))
_QUERY = np.ones(8, np.float32)


def _seed_index() -> bytes:
    path = _WORK / "seed.fai"
    rng = np.random.default_rng(0)
    index.build(path, rng.standard_normal((40, 8)).astype(np.float32), np.arange(40) * 3)
    return path.read_bytes()


def _seed_bundle() -> Path:
    """A minimal valid bundle: its manifest is what the fuzzer mutates (files stay valid)."""
    from fastattr.bundle import write_manifest
    from fastattr.preprocess import PreprocessSpec

    root = _WORK / "bundle"
    root.mkdir()
    (root / "index.fai").write_bytes(_seed_index())
    (root / "items.jsonl").write_text("".join(f'{{"item_id": {i * 3}, "caption": "c{i}"}}\n' for i in range(40)))
    (root / "embedder.onnx").write_bytes(b"not read by open_bundle")
    (root / "tokenizer.json").write_text("{}")
    write_manifest(root, roles={"embedder": "embedder.onnx", "index": "index.fai", "items": "items.jsonl",
                                "tokenizer": "tokenizer.json"},
                   dim=8, n_items=40, spec=PreprocessSpec(size=(16, 16)), provenance={})
    return root


def fuzz_index(data: bytes) -> None:
    path = _WORK / "x.fai"
    path.write_bytes(data)
    try:
        found = index.open(path)
        found.verify()
        if found.dim == 8 and len(found):
            found.search(_QUERY, k=min(3, len(found)))
    except FastattrError:
        pass


_BUNDLE: Path | None = None


def fuzz_bundle(data: bytes) -> None:
    (_BUNDLE / "manifest.json").write_bytes(data)
    try:
        bundle = open_bundle(_BUNDLE, verify="sizes")
        bundle.items()
        bundle.file("index")
    except FastattrError:
        pass


def main() -> None:
    global _BUNDLE
    target = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if target not in ("index", "bundle"):
        raise SystemExit("usage: python fuzz/loaders.py index|bundle [atheris/libFuzzer options] [CORPUS_DIR]")
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if target == "bundle":
        _BUNDLE = _seed_bundle()
    if corpus:   # a corpus folder starts with the valid file, so mutations begin from it
        seed = Path(corpus[0]) / ("seed.fai" if target == "index" else "manifest.json")
        if not seed.exists():
            seed.parent.mkdir(parents=True, exist_ok=True)
            seed.write_bytes(_seed_index() if target == "index" else (_BUNDLE / "manifest.json").read_bytes())
    atheris.Setup(sys.argv, fuzz_index if target == "index" else fuzz_bundle)
    atheris.Fuzz()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
