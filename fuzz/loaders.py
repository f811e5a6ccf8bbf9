"""Coverage-guided fuzzing (atheris) of the two loaders that read files from elsewhere.

Usage:
    python fuzz/loaders.py index        -atheris_runs=1000000 [CORPUS_DIR]
    python fuzz/loaders.py index-header -atheris_runs=1000000 [CORPUS_DIR]
    python fuzz/loaders.py bundle       -atheris_runs=100000  [CORPUS_DIR]
    python fuzz/loaders.py index  -max_total_time=15          # the short run of the test suite
    python fuzz/loaders.py materialize CORPUS_DIR OUT_DIR     # index-header inputs -> index files
    python fuzz/loaders.py random-headers N OUT_DIR           # N seeded random index-header inputs -> files

``index``: the bytes are written as an index file, opened, verified and searched. Almost every
mutation of a whole file stops at the header checksum, so ``index-header`` reads its bytes as up
to eight patches (offset, 1/4/8 bytes; half of them inside the 256-byte header struct) and an
optional new length applied to a valid index, then rewrites the header checksum: the altered
header reaches the bounds checks, and the unverified file is searched before ``verify()``.
``bundle``: the bytes replace a valid bundle's ``manifest.json`` and the bundle is opened
(``verify="sizes"``) and queried. A ``FastattrError`` is the expected outcome of bad input; any
other exception, a crash or a hang is a finding. Seeds: a valid index file and a valid manifest,
written on first run. GCC cannot emit the coverage counters libFuzzer reads, so the guidance sees
the Python side only; the C++ side is exercised by volume and by replaying the corpus under
ASan/UBSan (``core_tests replay``, docs/reliability.md).
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
from pathlib import Path

import atheris

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


_SEED: bytes = b""
_HEADER_STRUCT_BYTES = 256
_HEADER_BLOCK_BYTES = 4096
_CHECKSUM_OFFSET = 184   # offsetof(Header, header_checksum) (cpp/format.hpp)
_M = (1 << 64) - 1
_P1, _P2, _P3, _P4, _P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                           0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)


def _round(acc: int, word: int) -> int:
    acc = (acc + word * _P2) & _M
    acc = ((acc << 31) | (acc >> 33)) & _M
    return (acc * _P1) & _M


def header_checksum(block: bytes) -> int:
    """cpp/format.hpp's Checksum over the 4096-byte header block with its checksum field zeroed."""
    block = block[:_CHECKSUM_OFFSET] + bytes(8) + block[_CHECKSUM_OFFSET + 8:_HEADER_BLOCK_BYTES]
    lanes = [(_P1 + _P2) & _M, _P2, 0, (-_P1) & _M]
    words = struct.unpack_from(f"<{_HEADER_BLOCK_BYTES // 8}Q", block)
    for i in range(0, len(words), 4):
        for lane in range(4):
            lanes[lane] = _round(lanes[lane], words[i + lane])
    h = (_HEADER_BLOCK_BYTES * _P5) & _M
    for lane in lanes:
        h = (((h ^ _round(0, lane)) * _P1) + _P4) & _M
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    return h ^ (h >> 32)


def patched_index(data: bytes) -> bytes:
    """The seed index with the patches ``data`` describes, its header checksum rewritten."""
    fdp = atheris.FuzzedDataProvider(data)
    out = bytearray(_SEED)
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        span = _HEADER_STRUCT_BYTES if fdp.ConsumeBool() else len(out)
        width = (1, 4, 8)[fdp.ConsumeIntInRange(0, 2)]
        where = fdp.ConsumeIntInRange(0, span - width)
        value = fdp.ConsumeBytes(width)
        out[where:where + len(value)] = value
    if fdp.ConsumeBool():
        new_length = fdp.ConsumeIntInRange(0, len(out) + 256)
        out = out[:new_length] + bytes(max(0, new_length - len(out)))
    if len(out) >= _HEADER_BLOCK_BYTES:
        struct.pack_into("<Q", out, _CHECKSUM_OFFSET, header_checksum(bytes(out)))
    return bytes(out)


def fuzz_index_header(data: bytes) -> None:
    path = _WORK / "x.fai"
    path.write_bytes(patched_index(data))
    try:
        found = index.open(path)
        if len(found):
            found.search(np.ones(found.dim, np.float32), k=min(3, len(found)), exclude=[0, 3])
        found.verify()
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


TARGETS = {"index": fuzz_index, "index-header": fuzz_index_header, "bundle": fuzz_bundle}


def materialize(corpus: Path, out: Path) -> int:
    """Writes the index file each ``index-header`` corpus input stands for (to replay them elsewhere,
    e.g. through the ASan build of cpp/tests); returns how many."""
    out.mkdir(parents=True, exist_ok=True)
    inputs = sorted(p for p in corpus.iterdir() if p.is_file())
    for entry in inputs:
        (out / f"{entry.name}.fai").write_bytes(patched_index(entry.read_bytes()))
    return len(inputs)


def random_headers(n: int, out: Path, seed: int = 0) -> int:
    """Writes the index files of ``n`` random ``index-header`` inputs (seeded): a corpus of
    altered-but-resealed headers for the sanitizer build, which libFuzzer's corpus (only inputs
    that added coverage) is too small to be."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (out / f"random-{i:06d}.fai").write_bytes(patched_index(rng.bytes(int(rng.integers(1, 64)))))
    return n


def main() -> None:
    global _BUNDLE, _SEED
    target = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if target == "materialize" and len(sys.argv) == 3:
        _SEED = _seed_index()
        print(f"wrote {materialize(Path(sys.argv[1]), Path(sys.argv[2]))} index files to {sys.argv[2]}")
        return
    if target == "random-headers" and len(sys.argv) == 3:
        _SEED = _seed_index()
        print(f"wrote {random_headers(int(sys.argv[1]), Path(sys.argv[2]))} index files to {sys.argv[2]}")
        return
    if target not in TARGETS:
        raise SystemExit(f"usage: python fuzz/loaders.py {'|'.join(TARGETS)} [atheris/libFuzzer options] [CORPUS_DIR]")
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    _SEED = _seed_index()
    if target == "bundle":
        _BUNDLE = _seed_bundle()
    if corpus:
        Path(corpus[0]).mkdir(parents=True, exist_ok=True)
    if corpus and target != "index-header":   # a corpus starts with the valid file, so mutations begin from it
        seed = Path(corpus[0]) / ("seed.fai" if target == "index" else "manifest.json")
        if not seed.exists():
            seed.write_bytes(_SEED if target == "index" else (_BUNDLE / "manifest.json").read_bytes())
    # instrument_all, not instrument_imports: an editable install loads fastattr through a custom
    # loader that instrument_imports misses (coverage 19 edges instead of 256 on the bundle target).
    atheris.instrument_all()
    atheris.Setup(sys.argv, TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
