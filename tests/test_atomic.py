"""Tests for _atomic.py: replacing only outputs of the same kind, atomic exchange, recovery, stale temporaries."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fastattr._atomic import atomic_dir, recover, remove_stale_temps
from fastattr.errors import InputError


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write(path: Path, text: str) -> None:
    with atomic_dir(path, marker="made.json", what="test output") as tmp:
        (tmp / "made.json").write_text(text)


def test_refuses_a_users_folder_or_file_and_loses_nothing(tmp_path: Path) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(InputError, match="not a test output.*chapter1.tex.*--overwrite"):
        _write(precious, "new")
    assert (precious / "chapter1.tex").read_text() == "years of work"
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="is a file"):
        _write(tmp_path / "notes.txt", "new")
    assert (tmp_path / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "thesis"]   # no temporaries left
    with atomic_dir(precious, marker="made.json", overwrite=True) as tmp:   # explicit: replaced
        (tmp / "made.json").write_text("new")
    assert [p.name for p in precious.iterdir()] == ["made.json"]


def test_replaces_its_own_kind_and_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty", "1")
    _write(tmp_path / "out", "1")
    _write(tmp_path / "out", "2")
    assert (tmp_path / "out" / "made.json").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]
    mode = stat.S_IMODE((tmp_path / "out").stat().st_mode)
    assert mode & 0o055 == 0o055 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_cut_off_replacement_is_recovered(tmp_path: Path) -> None:
    # The fallback replacement was killed between its two renames: only the old copy is left.
    old = tmp_path / f".out.old-{_dead_pid()}"
    old.mkdir()
    (old / "made.json").write_text("old")
    assert recover(tmp_path / "out") and (tmp_path / "out" / "made.json").read_text() == "old"
    assert not recover(tmp_path / "out")   # nothing to do once it is there


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getppid()
    stale = [tmp_path / f".out.{dead}.x1.tmp", tmp_path / f".items.fai.tmp-{dead}-AbC123"]
    kept = [tmp_path / f".out.{alive}.x2.tmp", tmp_path / "out.tmp", tmp_path / ".other.123.tmp"]
    stale[0].mkdir()
    (stale[0] / "half.bin").write_bytes(b"x")
    for p in [stale[1], *kept]:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temps(tmp_path / "out")) == [stale[0]]
    assert sorted(remove_stale_temps(tmp_path / "items.fai")) == [stale[1]]
    assert all(p.exists() for p in kept)
    stale[0].mkdir()
    _write(tmp_path / "out", "1")   # every write cleans up first
    assert not stale[0].exists()


def test_index_build_refuses_to_replace_a_folder_that_is_not_a_bundle(tmp_path: Path, capsys) -> None:
    from fastattr.cli import main

    target = tmp_path / "docs"
    target.mkdir()
    (target / "a.txt").write_text("mine")
    rc = main(["index", "build", "--embedder", str(tmp_path / "none"), "--dataset", str(tmp_path / "none"),
               "--out", str(target)])
    assert rc == 1 and (target / "a.txt").read_text() == "mine"
    assert "is not a bundle" in capsys.readouterr().err


def test_cli_reports_unwritable_paths_without_a_traceback(tmp_path: Path, capsys) -> None:
    from fastattr.cli import main

    def fail(args):
        open(tmp_path, "w")   # a folder where a file goes

    import argparse

    from fastattr import cli

    parser = cli.build_parser
    try:
        cli.build_parser = lambda: _one_command_parser(fail)
        assert main(["x"]) == 1
    finally:
        cli.build_parser = parser
    err = capsys.readouterr().err
    assert err.startswith("fastattr: Is a directory: ") and str(tmp_path) in err and "Traceback" not in err
    assert isinstance(argparse.ArgumentParser, type)


def _one_command_parser(handler):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("x")
    parser.set_defaults(handler=handler)
    return parser
