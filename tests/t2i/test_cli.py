"""Tests for t2i/cli.py: `fastattr t2i train` and `fastattr t2i sample`."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from fastattr.cli import main
from fastattr.world import Dataset


def test_train_then_sample(tiny_world: Dataset, tmp_path: Path, capsys) -> None:
    model = tmp_path / "m"
    assert main(["t2i", "train", str(tiny_world.path), str(model), "--preset", "tiny",
                 "--steps", "2", "--threads", "1"]) == 0
    assert (model / "unet.safetensors").is_file()
    assert main(["t2i", "sample", str(model), "a red circle", "a blue square",
                 "--out", str(tmp_path / "png"), "--steps", "2", "--scale", "2"]) == 0
    with Image.open(tmp_path / "png" / "001.png") as img:
        assert img.size == (16, 16)
    assert "a blue square" in capsys.readouterr().out


def test_errors_are_reported(tmp_path: Path, capsys) -> None:
    assert main(["t2i", "sample", str(tmp_path / "none"), "x"]) == 1
    assert "CheckpointError: model folder" in capsys.readouterr().err
    assert main(["t2i", "train", str(tmp_path / "none"), str(tmp_path / "m")]) == 1
    assert "DatasetError" in capsys.readouterr().err
