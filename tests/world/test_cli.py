"""Tests for world/cli.py: `fastattr world make`."""

from __future__ import annotations

from pathlib import Path

from fastattr.cli import main
from fastattr.world import load_dataset


def test_world_make(tmp_path: Path, capsys) -> None:
    code = main(["world", "make", str(tmp_path / "w"), "--n-items", "9", "--image-size", "8",
                 "--seed", "1"])
    assert code == 0
    ds = load_dataset(tmp_path / "w")
    assert len(ds) == 9 and ds.image_size == (8, 8) and ds.meta["seed"] == 1
    assert "wrote 9 items at 8x8" in capsys.readouterr().out


def test_world_make_reports_bad_sizes(tmp_path: Path, capsys) -> None:
    assert main(["world", "make", str(tmp_path / "w"), "--n-items", "0"]) == 1
    assert "DatasetError: n_items must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
