"""Tests of `fastattr export` (export/cli.py) on a real, tiny student checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared kit lives in tests/
import _export_kit as kit  # noqa: E402

from fastattr._quiet import QUIET_ENVIRONMENT  # noqa: E402
from fastattr.cli import main  # noqa: E402

pytest.importorskip("torch")


def _tiny_student(folder: Path) -> Path:
    """The student's own modules (ViT stand-in, BERT text encoder, Head), saved as a checkpoint."""
    encoders = pytest.importorskip("fastattr.student.encoders")
    head_mod = pytest.importorskip("fastattr.student.head")
    embedder_mod = pytest.importorskip("fastattr.student.embedder")
    from tokenizers import Tokenizer
    from transformers import BertConfig

    image_encoder = encoders.image_encoder_from_config(
        encoders.standin_vit_config(kit.IMAGE_SIDE, hidden=32, layers=1, heads=2))
    tok = Tokenizer.from_file(str(kit.tokenizer_file()))
    text_config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    text_encoder = encoders.text_encoder_from_config(text_config, tok, max_length=kit.MAX_LENGTH)
    head = head_mod.Head(image_encoder.dim + text_encoder.dim, hidden=32, dim=8, n_hidden=2)
    return embedder_mod.save_student(folder, image_encoder, text_encoder, head)


def test_export_a_real_student(tmp_path, capsys):
    student = _tiny_student(tmp_path / "student")
    code = main(["export", str(student), "--out", str(tmp_path / "export"), "--dataset", str(kit.root() / "world"),
                 "--int8", "--json"])
    assert code == 0
    out = capsys.readouterr().out
    assert "embedder       parity on 64 inputs" in out and "embedder_int8" in out
    info = json.loads(out[out.index("{"):])
    assert info["format"] == "fastattr-embedder" and set(info["files"]) == {"embedder", "embedder_int8"}
    parity = info["parity"]["embedder"]
    assert parity["n"] >= 64 and parity["max_abs"] <= 1e-4 and parity["min_cosine"] >= 0.9999
    assert info["dim"] == 8 and info["source"]["student"].endswith("student")


def test_export_run_prints_no_third_party_warnings(tmp_path):
    # A real process, so the libraries import after the CLI set their quiet defaults, as for a user.
    # Without them torch.onnx logs "W... torchvision is not installed" per operator here.
    student = _tiny_student(tmp_path / "student")
    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENVIRONMENT and k != "FASTATTR_PROGRESS"}
    run = subprocess.run([sys.executable, "-m", "fastattr", "export", str(student), "--out", str(tmp_path / "export"),
                          "--dataset", str(kit.root() / "world")], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "warning" not in run.stderr.lower() and "torchvision" not in run.stderr and "\r" not in run.stderr


def test_export_command_errors(tmp_path, capsys):
    pytest.importorskip("fastattr.student.embedder")
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "export")]) == 1
    assert "CheckpointError" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()
