"""Tests of fastattr._progress: bars only on a terminal (or when forced), a few plain lines elsewhere."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from fastattr import _progress
from fastattr._progress import make_progress, progress_mode
from fastattr.data.cache import cached_rows


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_mode_follows_the_terminal_unless_forced(monkeypatch):
    monkeypatch.delenv("FASTATTR_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_mode() == "lines"
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress_mode() == "bar"
    for forced in ("bar", "lines", "off"):
        monkeypatch.setenv("FASTATTR_PROGRESS", forced)
        assert progress_mode() == forced
    monkeypatch.setenv("FASTATTR_PROGRESS", "sparkles")  # not a mode: the automatic choice
    assert progress_mode() == "bar"


def test_lines_are_few_and_never_redrawn(monkeypatch, capsys):
    monkeypatch.setenv("FASTATTR_PROGRESS", "lines")
    monkeypatch.setattr(_progress, "MIN_SECONDS_BETWEEN_LINES", 0.0)  # as if each step were slow
    with make_progress(total=1000, desc="teacher queries", unit="query") as bar:
        for _ in range(1000):
            bar.update(1)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err
    assert lines[0] == "[fastattr] teacher queries: 0/1000 query"
    assert lines[1] == "[fastattr] teacher queries: 100/1000 query"
    assert lines[-1].startswith("[fastattr] teacher queries: 1000/1000 query in ") and lines[-1].endswith(" s")
    assert len(lines) == 11  # the start, nine tenths, the end


def test_a_quick_stage_prints_its_start_and_end_only(monkeypatch, capsys):
    monkeypatch.setenv("FASTATTR_PROGRESS", "lines")
    with make_progress(total=1000, desc="world", unit="item") as bar:
        for _ in range(1000):
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[fastattr] world: 0/1000 item" and lines[1].startswith("[fastattr] world: 1000/1000 item in ")
    assert len(lines) == 2


def test_lines_show_the_postfix_start_offset_and_an_early_close(monkeypatch, capsys):
    monkeypatch.setenv("FASTATTR_PROGRESS", "lines")
    monkeypatch.setattr(_progress, "MIN_SECONDS_BETWEEN_LINES", 0.0)
    bar = make_progress(total=10, initial=5, desc="t2i train", unit="step")
    bar.set_postfix(loss="0.1234")
    bar.update(2)
    bar.close()
    bar.close()  # a second close prints nothing more
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[fastattr] t2i train: 5/10 step"
    assert lines[-1].startswith("[fastattr] t2i train: 7/10 step (loss=0.1234) in ")
    assert len(lines) == 3  # the start, one line for the update that passed two tenths, the end


def test_an_iterable_is_wrapped_and_its_length_is_the_total(monkeypatch, capsys):
    monkeypatch.setenv("FASTATTR_PROGRESS", "lines")
    assert list(make_progress(range(3), desc="world", unit="item")) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[fastattr] world: 0/3 item" and lines[-1].startswith("[fastattr] world: 3/3 item in ")


@pytest.mark.parametrize("mode, disable", [("off", False), ("lines", True), ("bar", True)])
def test_off_or_disabled_prints_nothing(monkeypatch, capsys, mode, disable):
    monkeypatch.setenv("FASTATTR_PROGRESS", mode)
    with make_progress(total=4, desc="rows", disable=disable) as bar:
        bar.update(4)
        bar.set_postfix(loss=1.0)
    assert list(make_progress(range(2), disable=disable)) == [0, 1]
    assert capsys.readouterr().err == ""


def test_bar_mode_draws_a_tqdm_bar(monkeypatch, capsys):
    monkeypatch.setenv("FASTATTR_PROGRESS", "bar")
    with make_progress(total=4, desc="rows", unit="row") as bar:
        bar.update(4)
    assert "\r" in capsys.readouterr().err


def test_a_stage_logs_lines_not_bars(tmp_path, monkeypatch, capsys):
    # What a log file or CI gets: stderr is not a terminal and nothing is forced.
    monkeypatch.delenv("FASTATTR_PROGRESS", raising=False)
    monkeypatch.setattr(_progress, "MIN_SECONDS_BETWEEN_LINES", 0.0)
    rows = cached_rows(tmp_path / "x.npy", "k", (2,), lambda lo, hi: np.ones((hi - lo, 2)), n=640,
                       batch=8, desc="caption text states")
    assert rows.shape == (640, 2)
    err = capsys.readouterr().err
    assert "\r" not in err and "%|" not in err
    lines = err.splitlines()
    assert lines[0] == "[fastattr] caption text states: 0/640 row" and len(lines) == 11
