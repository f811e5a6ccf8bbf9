"""Tests of fastattr.teacher.cli (and teacher.pipeline): the commands on a tiny world and model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fastattr.cli import main  # noqa: E402
from fastattr.teacher.ekfac import load_fisher  # noqa: E402
from fastattr.teacher.teacher_set import load_teacher_set  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from _pipelines import pixel_pipeline

    from fastattr.world import make_world

    root = tmp_path_factory.mktemp("cli")
    make_world(root / "world", n_items=16, image_size=8, seed=0)
    pixel_pipeline(root / "model")
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


def _imagefolder(root, n: int, size: tuple[int, int], prefix: str):
    import json

    import numpy as np
    from PIL import Image

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(root / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": f"{prefix} {i}"}))
    (root / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return root


def test_own_latent_model_data_and_prompts(pipeline_folders, tmp_path, capsys) -> None:
    """A user's SD-style (latent, v-prediction) pipeline, an imagefolder of 23x17 images, a prompts file."""
    data = _imagefolder(tmp_path / "data", 10, (23, 17), "photo")
    (tmp_path / "prompts.txt").write_text("# queries\na photo of one\n{\"prompt\": \"held out\", \"split\": \"test\"}\n"
                                          "a photo of two\n")
    common = ["--dataset", str(data), "--model", str(pipeline_folders["latent-v"]), "--candidates-k", "4",
              "--subsample-m", "2", "--timesteps", "2", "--query-draws", "2", "--workers", "1",
              "--sample-steps", "2", "--threads", "1", "--train-queries", "2", "--test-queries", "1"]
    assert main(["teacher", "curate", "--out", str(tmp_path / "t"), "--prompts", str(tmp_path / "prompts.txt"),
                 *common]) == 0
    ts = load_teacher_set(tmp_path / "t")
    assert ts.captions == ["a photo of one", "held out", "a photo of two"]
    assert ts.splits == ["train", "test", "train"] and ts.query_images.shape == (3, 16, 16, 3)
    assert ts.meta["model_space"] == {"latent": True, "shape": [4, 8, 8], "prediction_type": "v_prediction"}
    assert [int((ts.query_id == q).sum()) for q in range(3)] == [2, 10, 2]
    assert (tmp_path / "t" / "query_images" / "q000001.png").is_file()
    # Logged generations instead of prompts: attributed as they are, resized to the model's size.
    logged = _imagefolder(tmp_path / "logged", 3, (40, 30), "logged")
    assert main(["teacher", "curate", "--out", str(tmp_path / "l"), "--query-images", str(logged), *common]) == 0
    ts = load_teacher_set(tmp_path / "l")
    assert ts.captions == ["logged 0", "logged 1", "logged 2"] and ts.splits == ["test", "train", "train"]
    assert ts.meta["query_source"] == "query_images"
    # Not the embedded world and no queries: a clear error naming both options.
    assert main(["teacher", "curate", "--out", str(tmp_path / "n"), *common]) == 1
    assert "--prompts FILE" in capsys.readouterr().err
