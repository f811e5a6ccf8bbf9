"""Bad inputs, table-driven, through every public query entry point: ``Attributor.query``,
``query_batch`` and ``embed``, a bare ``Index.search``, and the ``fastattr query`` CLI.

Each case has one expected outcome, the same at every entry point that can express it: a defined
result ("ok", with the number of hits where that is fixed) or a ``FastattrError`` whose message
holds a given fragment. Anything else (another exception, a traceback from the CLI) fails.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

import _export_kit as kit
import fastattr
from fastattr import index
from fastattr.cli import main
from fastattr.errors import FastattrError

OK = "ok"


def _png(array: np.ndarray, **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (its pixel data is a stub): size checks happen first."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


_rng = np.random.default_rng(0)
_RGB = _rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)

# name -> (image as given to the SDK, bytes for a file or None when no file can hold it, outcome)
IMAGES: dict[str, tuple[Any, bytes | None, str]] = {
    "png 30x20": (_png(_RGB), _png(_RGB), OK),
    "1x1 array": (np.full((1, 1, 3), 200, np.uint8), _png(np.full((1, 1, 3), 200, np.uint8)), OK),
    "odd 7x513 grey": (np.full((513, 7), 9, np.uint8), _png(np.full((513, 7), 9, np.uint8)), OK),
    "16-bit png": (_png(np.full((9, 9), 40000, np.uint16)), _png(np.full((9, 9), 40000, np.uint16)), OK),
    "palette png": (_encoded(Image.fromarray(_RGB).convert("P"), "PNG"),
                    _encoded(Image.fromarray(_RGB).convert("P"), "PNG"), OK),
    "cmyk jpeg": (_encoded(Image.fromarray(_RGB).convert("CMYK"), "JPEG"),
                  _encoded(Image.fromarray(_RGB).convert("CMYK"), "JPEG"), OK),
    "rgba png": (_png(np.dstack([_RGB, np.full((20, 30), 128, np.uint8)])),
                 _png(np.dstack([_RGB, np.full((20, 30), 128, np.uint8)])), OK),
    "0x0 array": (np.zeros((0, 0, 3), np.uint8), None, "empty"),
    "non-image bytes": (b"%PDF-1.4 certainly not pixels", b"%PDF-1.4 certainly not pixels", "not a decodable image"),
    "empty bytes": (b"", b"", "empty"),
    "truncated png": (_png(_RGB)[:60], _png(_RGB)[:60], "not a decodable image"),
    "huge png 9000x9000": (_png_header_only(9000, 9000), _png_header_only(9000, 9000), "downscale it first"),
    "bomb png 30000x30000": (_png_header_only(30000, 30000), _png_header_only(30000, 30000), "downscale it first"),
    "NaN float array": (np.full((4, 4, 3), np.nan, np.float32), None, "NaN"),
    "float array > 1": (np.full((4, 4, 3), 3.0, np.float32), None, "[0, 1]"),
    "int32 array": (np.zeros((4, 4, 3), np.int32), None, "dtype"),
    "5 channels": (np.zeros((4, 4, 5), np.uint8), None, "shape"),
    "missing file": ("/nonexistent/fastattr/gen.png", None, "no image file"),
    "None": (None, None, "type NoneType"),
}

GOOD_PROMPT = "a red square on grey"
# name -> (prompt, outcome)
PROMPTS: dict[str, tuple[Any, str]] = {
    "plain": (GOOD_PROMPT, OK),
    "100k characters": ("red " * 25_000, OK),   # truncated to the tokenizer's max_length
    "unknown words only": ("zxqv wvut", OK),
    "empty": ("", "empty"),
    "whitespace only": ("   \t ", "empty"),
    "lone surrogate": ("a red \ud800 square", "not valid Unicode"),
    "non-UTF-8 argv": (b"a red \xff square".decode("utf-8", "surrogateescape"), "not valid Unicode"),
    "bytes": (b"a red square", "str"),
    "None": (None, "str"),
}

N = kit.N_ITEMS
# name -> (k, outcome, hits when ok)
KS: dict[str, tuple[Any, str, int]] = {
    "1": (1, OK, 1),
    "N": (N, OK, N),
    "N + 5": (N + 5, OK, N),   # more than the index holds: every item
    "0": (0, "at least 1", 0),
    "-1": (-1, "at least 1", 0),
    "2.5": (2.5, "int", 0),
    "'3'": ("3", "int", 0),
    "True": (True, "int", 0),
}

_ids = [int(i) for i in kit.dataset().item_ids]
# name -> (exclude, outcome, hits when ok, with k = 5)
EXCLUDES: dict[str, tuple[Any, str, int]] = {
    "unknown ids": ([10**9, 2**63], OK, 5),
    "empty list": ([], OK, 5),
    "all but 3": (_ids[3:], OK, 3),   # fewer items left than k: what is left
    "numpy ids": (np.asarray(_ids[:2], np.int64), OK, 5),
    "'12'": ("12", "exclude", 0),
    "[2.9]": ([2.9], "exclude", 0),
    "[-1]": ([-1], "exclude", 0),
    "[2**64]": ([2**64], "exclude", 0),
    "7": (7, "exclude", 0),
}


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return OK, call()
    except FastattrError as exc:
        assert str(exc), "an error must say what is wrong"
        return str(exc), None


def _check(outcome: str, expected: str, result: Any = None, hits: int | None = None) -> None:
    if expected == OK:
        assert outcome == OK, f"expected a result, got the error: {outcome}"
        if hits is not None:
            assert len(result) == hits
    else:
        assert outcome != OK, f"expected an error mentioning {expected!r}, got a result"
        assert expected in outcome, outcome


@pytest.fixture(scope="module")
def attributor() -> fastattr.Attributor:
    return fastattr.Attributor.load(kit.bundle(), device="cpu")


SDK = {
    "query": lambda a, image, prompt, **kw: a.query(image, prompt, **kw),
    "query_batch": lambda a, image, prompt, **kw: a.query_batch([image], [prompt], **kw)[0],
    "embed": lambda a, image, prompt, **kw: a.embed([image], [prompt]),
}


@pytest.mark.parametrize("entry", SDK)
@pytest.mark.parametrize("case", IMAGES)
def test_images_sdk(attributor, entry: str, case: str) -> None:
    image, _, expected = IMAGES[case]
    outcome, result = _outcome(lambda: SDK[entry](attributor, image, GOOD_PROMPT))
    _check(outcome, expected, result, 10 if entry != "embed" else 1)


@pytest.mark.parametrize("entry", SDK)
@pytest.mark.parametrize("case", PROMPTS)
def test_prompts_sdk(attributor, entry: str, case: str) -> None:
    prompt, expected = PROMPTS[case]
    outcome, result = _outcome(lambda: SDK[entry](attributor, _RGB, prompt))
    _check(outcome, expected, result, 10 if entry != "embed" else 1)


@pytest.mark.parametrize("entry", ["query", "query_batch"])
@pytest.mark.parametrize("case", KS)
def test_k_sdk(attributor, entry: str, case: str) -> None:
    k, expected, hits = KS[case]
    outcome, result = _outcome(lambda: SDK[entry](attributor, _RGB, GOOD_PROMPT, k=k))
    _check(outcome, expected, result, hits)


@pytest.mark.parametrize("entry", ["query", "query_batch"])
@pytest.mark.parametrize("case", EXCLUDES)
def test_exclude_sdk(attributor, entry: str, case: str) -> None:
    exclude, expected, hits = EXCLUDES[case]
    outcome, result = _outcome(lambda: SDK[entry](attributor, _RGB, GOOD_PROMPT, k=5, exclude=exclude))
    _check(outcome, expected, result, hits)
    if outcome == OK and len(exclude):
        assert not {h.item_id for h in result} & {int(i) for i in exclude if int(i) < 2**63}


@pytest.fixture(scope="module")
def bare_index(tmp_path_factory: pytest.TempPathFactory) -> index.Index:
    path = tmp_path_factory.mktemp("bad-inputs") / "bare.fai"
    index.build(path, np.random.default_rng(1).standard_normal((N, 8)).astype(np.float32), _ids)
    return index.open(path)


@pytest.mark.parametrize("case", KS)
def test_k_index(bare_index: index.Index, case: str) -> None:
    k, expected, hits = KS[case]
    if case == "N + 5":   # the bare index is strict where the SDK is forgiving: k > N is an error
        expected = "holds only"
    outcome, result = _outcome(lambda: bare_index.search(np.ones(8, np.float32), k=k))
    _check(outcome, expected, None if result is None else result[0], hits)


@pytest.mark.parametrize("case", EXCLUDES)
def test_exclude_index(bare_index: index.Index, case: str) -> None:
    exclude, expected, hits = EXCLUDES[case]
    if case == "all but 3":
        expected = "holds only"
    outcome, result = _outcome(lambda: bare_index.search(np.ones(8, np.float32), k=5, exclude=exclude))
    _check(outcome, expected, None if result is None else result[0], hits)


@pytest.mark.parametrize("case, vector, expected", [
    ("NaN", np.full(8, np.nan, np.float32), "NaN"),
    ("inf", np.full(8, np.inf, np.float32), "infinite"),
    ("wrong dim", np.ones(7, np.float32), "dim"),
    ("a batch", np.ones((2, 8), np.float32), "use search_batch"),
    ("strings", np.array(["a"] * 8), "real numbers"),
    ("list of floats", [0.5] * 8, OK),
])
def test_query_vectors_index(bare_index: index.Index, case: str, vector: Any, expected: str) -> None:
    outcome, result = _outcome(lambda: bare_index.search(vector, k=3))
    _check(outcome, expected, None if result is None else result[0], 3)


def test_empty_batch_index(bare_index: index.Index) -> None:
    ids, scores = bare_index.search_batch(np.ones((0, 8), np.float32), k=3)
    assert ids.shape == scores.shape == (0, 3)


# ----------------------------------------------------------------------------- the CLI


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[str, Any]:
    """Runs `fastattr query ...` in this process: ("ok", hits), (error message, None) or ("usage", None)."""
    try:
        rc = main(["query", str(kit.bundle()), *argv, "--json", "--device", "cpu"])
    except SystemExit as exc:   # argparse refusing an argument: a usage message, exit 2
        assert exc.code == 2
        assert "usage:" in capsys.readouterr().err
        return "usage", None
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if rc == 0:
        return OK, json.loads(out)["results"]
    assert rc == 1 and err.startswith("fastattr: "), (rc, err)
    return err, None


@pytest.mark.parametrize("case", [c for c, v in IMAGES.items() if v[1] is not None or c == "missing file"])
def test_images_cli(capsys, tmp_path: Path, case: str) -> None:
    image, data, expected = IMAGES[case]
    path = Path(image) if data is None else tmp_path / "gen.img"
    if data is not None:
        path.write_bytes(data)
    outcome, result = _cli(capsys, str(path), GOOD_PROMPT)
    _check(outcome, expected, result, 10)


def test_image_cli_folder(capsys, tmp_path: Path) -> None:
    outcome, _ = _cli(capsys, str(tmp_path), GOOD_PROMPT)
    assert outcome != OK and str(tmp_path) in outcome


@pytest.mark.parametrize("case", [c for c, v in PROMPTS.items() if isinstance(v[0], str)])
def test_prompts_cli(capsys, tmp_path: Path, case: str) -> None:
    prompt, expected = PROMPTS[case]
    (tmp_path / "gen.png").write_bytes(_png(_RGB))
    outcome, result = _cli(capsys, str(tmp_path / "gen.png"), prompt)
    _check(outcome, expected, result, 10)


@pytest.mark.parametrize("k, expected, hits", [("1", OK, 1), (str(N + 5), OK, N), ("0", "at least 1", 0),
                                               ("-1", "at least 1", 0), ("2.5", "usage", 0), ("x", "usage", 0)])
def test_k_cli(capsys, tmp_path: Path, k: str, expected: str, hits: int) -> None:
    (tmp_path / "gen.png").write_bytes(_png(_RGB))
    outcome, result = _cli(capsys, str(tmp_path / "gen.png"), GOOD_PROMPT, "-k", k)
    _check(outcome, expected, result, hits)


@pytest.mark.parametrize("exclude, expected, hits", [
    ("1000000000", OK, 5), (",".join(map(str, _ids[3:])), OK, 3), ("", OK, 5),
    ("2.9", "--exclude must be comma-separated item ids", 0), ("a,b", "--exclude", 0), ("-1", "exclude", 0),
])
def test_exclude_cli(capsys, tmp_path: Path, exclude: str, expected: str, hits: int) -> None:
    (tmp_path / "gen.png").write_bytes(_png(_RGB))
    outcome, result = _cli(capsys, str(tmp_path / "gen.png"), GOOD_PROMPT, "-k", "5", f"--exclude={exclude}")
    _check(outcome, expected, result, hits)
