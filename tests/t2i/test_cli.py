"""Tests for t2i/cli.py: `fastattr t2i train` (any layout, any size) and `fastattr t2i sample`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from fastattr.cli import main
from fastattr.world import Dataset


def test_train_then_sample(tiny_world: Dataset, text_folder: Path, tmp_path: Path, capsys) -> None:
    model = tmp_path / "m"
    # An imagefolder of 28x20 images: --image-size crops and resizes them, the preset follows it.
    (tmp_path / "hf").mkdir()
    rows = []
    for i in range(4):
        Image.fromarray(np.full((20, 28, 3), 60 * i, np.uint8)).save(tmp_path / "hf" / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": f"shade {i}"}))
    (tmp_path / "hf" / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    assert main(["t2i", "train", str(tmp_path / "hf"), str(model), "--preset", "tiny", "--image-size", "12",
                 "--steps", "2", "--threads", "1"]) == 0
    assert json.loads((model / "t2i_config.json").read_text())["unet"]["sample_size"] == 12
    assert main(["t2i", "sample", str(model), "a red circle", "a blue square",
                 "--out", str(tmp_path / "png"), "--steps", "2", "--scale", "2"]) == 0
    with Image.open(tmp_path / "png" / "001.png") as img:
        assert img.size == (24, 24)
    assert "a blue square" in capsys.readouterr().out


def test_errors_are_reported(tmp_path: Path, capsys) -> None:
    assert main(["t2i", "sample", str(tmp_path / "none"), "x"]) == 1
    assert "CheckpointError: model folder" in capsys.readouterr().err
    assert main(["t2i", "train", str(tmp_path / "none"), str(tmp_path / "m")]) == 1
    assert "DatasetError" in capsys.readouterr().err
