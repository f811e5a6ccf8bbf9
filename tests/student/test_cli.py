"""`fastattr student train` / `eval` through the real dispatcher, and their error exit."""

from __future__ import annotations

import json

from fastattr.cli import main


def test_train_and_eval(world, teacher_dir, text_encoder_dir, tmp_path, capsys):
    out = tmp_path / "student"
    rc = main(["student", "train", "--dataset", str(world.path), "--teacher-set", str(teacher_dir), "--out", str(out),
               "--text-encoder", str(text_encoder_dir), "--pretrain-steps", "5", "--steps", "5", "--hidden", "32",
               "--dim", "16", "--batch-size", "128", "--quiet"])
    assert rc == 0 and (out / "student.json").is_file()
    assert json.loads((out / "student.json").read_text())["training"]["config"]["dim"] == 16
    rc = main(["student", "eval", "--student", str(out), "--dataset", str(world.path), "--teacher-set",
               str(teacher_dir), "--out", str(tmp_path / "eval"), "--no-ablation", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "student" in printed and "margin over best untuned" in printed
    assert "regression" not in json.loads((tmp_path / "eval" / "results.json").read_text())["methods"]


def test_error_exit(world, tmp_path, capsys):
    rc = main(["student", "eval", "--student", str(tmp_path), "--dataset", str(world.path), "--teacher-set",
               str(tmp_path), "--out", str(tmp_path / "e"), "--quiet"])
    assert rc == 1
    assert "CheckpointError" in capsys.readouterr().err
    # A dataset that is no dataset is named first, with the layouts fastattr reads.
    rc = main(["student", "eval", "--student", str(tmp_path), "--dataset", str(tmp_path), "--teacher-set",
               str(tmp_path), "--out", str(tmp_path / "e"), "--quiet"])
    assert rc == 1 and "imagefolder" in capsys.readouterr().err
