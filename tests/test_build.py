"""End to end: `fastattr demo --preset tiny` (the embedded world) and `fastattr build --preset quick` on a
user's own latent pipeline, imagefolder dataset of odd-sized images and prompts file, down to a query."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")

from fastattr.cli import main  # noqa: E402


def _imagefolder(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue"]
    rows = []
    for i in range(n):
        c = i % 3
        image = np.zeros((21, 27, 3), np.uint8)
        image[..., c] = 200
        image += rng.integers(0, 40, image.shape, dtype=np.uint8)
        Image.fromarray(image).convert("RGBA" if i % 2 else "RGB").save(root / f"img_{i:03d}.png")
        rows.append({"file_name": f"img_{i:03d}.png", "caption": f"a {colours[c]} photo number {i}"})
    (root / "metadata.csv").write_text("file_name,caption\n" + "".join(f"{r['file_name']},{r['caption']}\n"
                                                                      for r in rows))
    return root


def _vit_folder(path: Path) -> Path:
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=16, patch_size=8), add_pooling_layer=False).save_pretrained(path)
    return path


SPACES = {"latent-epsilon": {"latent": True, "shape": [4, 8, 8], "prediction_type": "epsilon"},
          "latent-v": {"latent": True, "shape": [4, 8, 8], "prediction_type": "v_prediction"},
          "pixel": {"latent": False, "shape": [3, 8, 8], "prediction_type": "epsilon"}}


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_build_on_a_users_model_imagefolder_and_prompts(tmp_path: Path, capsys, kind: str) -> None:
    from _pipelines import PIPELINES

    from fastattr import Attributor

    model = PIPELINES[kind](tmp_path / "pipe")
    data = _imagefolder(tmp_path / "data", 24)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a {c} photo\n" for c in ["red", "green", "blue"] * 4))
    args = ["build", "--model", str(model), "--dataset", str(data), "--prompts", str(prompts),
            "--out", str(tmp_path / "bundle"), "--preset", "quick", "--image-encoder", str(_vit_folder(tmp_path / "vit")),
            "--threads", "1", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "evaluation on 2 test queries, 24 training items" in out and "student" in out
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["provenance"]["teacher"]["model_space"] == SPACES[kind]
    att = Attributor.load(tmp_path / "bundle")
    hits = att.query(np.asarray(Image.open(data / "img_004.png").convert("RGB")), "a green photo", k=5)
    assert len(hits) == 5 and all(h.caption.startswith("a ") for h in hits)
    assert len({h.item_id for h in hits}) == 5
    # A rerun finds every stage cached.
    assert main(args) == 0
    assert "[teacher] cached" in capsys.readouterr().out


def test_build_refuses_what_it_cannot_do(tmp_path: Path, capsys) -> None:
    from _pipelines import pixel_pipeline

    model = pixel_pipeline(tmp_path / "px")
    data = _imagefolder(tmp_path / "data", 24)
    base = ["build", "--model", str(model), "--dataset", str(data), "--out", str(tmp_path / "b"),
            "--preset", "quick", "--threads", "1", "--quiet"]
    assert main(base) == 1
    assert "--prompts FILE" in capsys.readouterr().err
    (tmp_path / "p.txt").write_text("x\n" * 12)
    assert main([*base, "--prompts", str(tmp_path / "p.txt")]) == 1
    assert "--image-encoder" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_demo_tiny_end_to_end(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--preset", "tiny", "--work", str(tmp_path / "demo"), "--quiet", "--seed", "1",
                 "--threads", "1", "--workers", "1", "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{\n"):])
    assert len(summary["results"]) == 10 and summary["results"][0]["rank"] == 1
    assert (tmp_path / "demo" / "report.html").is_file() and (tmp_path / "demo" / "t2i" / "model_index.json").is_file()
    # Whoever serves the outputs can read them: no 0600 files or 0700 folders from temp-file defaults.
    mask = os.umask(0)
    os.umask(mask)
    unreadable = [(str(p), oct(stat.S_IMODE(p.stat().st_mode))) for p in (tmp_path / "demo").rglob("*")
                  if stat.S_IMODE(p.stat().st_mode) & 0o444 != 0o444 & ~mask
                  or (p.is_dir() and stat.S_IMODE(p.stat().st_mode) & 0o111 != 0o111 & ~mask)]
    assert not unreadable, unreadable[:5]
