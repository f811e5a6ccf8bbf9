"""Tests of fastattr.teacher.cli (and teacher.pipeline): the commands on a tiny world and model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fastattr.cli import main  # noqa: E402
from fastattr.teacher.ekfac import load_fisher  # noqa: E402
from fastattr.teacher.teacher_set import load_teacher_set  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from fastattr.t2i import T2IConfig, T2IModel
    from fastattr.t2i.model import save_model
    from fastattr.world import make_world

    root = tmp_path_factory.mktemp("cli")
    make_world(root / "world", n_items=16, image_size=8, seed=0)
    save_model(root / "model", T2IModel.create(T2IConfig.preset("tiny")))
    return root


def test_fit_fisher_and_curate(folders, capsys) -> None:
    root = folders
    rc = main(["teacher", "fit-fisher", "--dataset", str(root / "world"), "--model", str(root / "model"),
               "--out", str(root / "fisher.safetensors"), "--threads", "1"])
    assert rc == 0
    fisher = load_fisher(root / "fisher.safetensors")
    assert fisher.n_samples == 16 and all(n.endswith(("attn2.to_k", "attn2.to_v")) for n in fisher.layers)
    args = ["teacher", "curate", "--dataset", str(root / "world"), "--model", str(root / "model"),
            "--out", str(root / "teacher"), "--fisher", str(root / "fisher.safetensors"),
            "--train-queries", "2", "--test-queries", "1", "--candidates-k", "8", "--subsample-m", "4",
            "--timesteps", "2", "--query-draws", "4", "--workers", "1", "--sample-steps", "2", "--threads", "1"]
    assert main(args) == 0
    ts = load_teacher_set(root / "teacher")
    assert ts.splits == ["train", "train", "test"]
    assert ts.query_images.shape == (3, 8, 8, 3)
    assert [int((ts.query_id == q).sum()) for q in range(3)] == [4, 4, 16]
    assert ts.meta["subsample_m"] == 4 and ts.meta["method"] == "AbU+"
    # A rerun resumes: every query is already done, nothing is regenerated or rescored.
    assert main(args) == 0
    assert load_teacher_set(root / "teacher").meta["resumed_queries"] == 3


def test_errors(folders, capsys) -> None:
    root = folders
    rc = main(["teacher", "curate", "--dataset", str(root / "world"), "--model", str(root / "nope"),
               "--out", str(root / "t2"), "--workers", "1"])
    assert rc == 1
    assert "CheckpointError" in capsys.readouterr().err
    rc = main(["teacher", "curate", "--dataset", str(root / "world"), "--model", str(root / "model"),
               "--out", str(root / "t3"), "--candidates-k", "999", "--workers", "1"])
    assert rc == 1
    assert "candidates_k" in capsys.readouterr().err
    rc = main(["teacher", "curate", "--dataset", str(root / "world"), "--model", str(root / "model"),
               "--out", str(root / "t4"), "--fisher", str(root / "missing.safetensors"),
               "--train-queries", "1", "--test-queries", "0", "--candidates-k", "4", "--workers", "1",
               "--sample-steps", "1"])
    assert rc == 1
    assert "does not exist" in capsys.readouterr().err
