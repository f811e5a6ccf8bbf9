"""Tests for t2i/trainer.py: determinism, checkpoints, resume and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastattr.errors import CheckpointError, DatasetError
from fastattr.t2i import T2IConfig, build_pipeline, load_model, train
from fastattr.t2i.trainer import learning_rate_at
from fastattr.world import Dataset, make_world


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].unet.state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _quiet(**kw):
    return dict(progress=False, log=lambda s: None, threads=1, **kw)


def test_training_writes_a_checkpoint_and_changes_weights(trained: Path, tiny_config) -> None:
    assert sorted(p.name for p in trained.iterdir()) == [
        "model_index.json", "optimizer.safetensors", "scheduler", "t2i_config.json", "text_encoder",
        "tokenizer", "train_state.json", "unet"]
    state = json.loads((trained / "train_state.json").read_text())
    assert state["step"] == 4 and state["seed"] == 0 and state["n_items"] == 12
    assert state["loss"] > 0
    assert not _same(_weights(trained), build_pipeline(tiny_config()).unet.state_dict())


def test_training_is_deterministic(tiny_world: Dataset, trained: Path, tmp_path: Path, tiny_config) -> None:
    train(tiny_world, tmp_path / "again", tiny_config(), **_quiet())
    assert _same(_weights(trained), _weights(tmp_path / "again"))


def test_resume_matches_an_uninterrupted_run(tiny_world: Dataset, trained: Path, tmp_path: Path, tiny_config) -> None:
    half = tiny_config(steps=2)
    train(tiny_world, tmp_path / "r", half, **_quiet())
    assert json.loads((tmp_path / "r" / "train_state.json").read_text())["step"] == 2
    train(tiny_world, tmp_path / "r", tiny_config(), resume=True, **_quiet())
    assert json.loads((tmp_path / "r" / "train_state.json").read_text())["step"] == 4
    assert _same(_weights(trained), _weights(tmp_path / "r"))


def test_crash_keeps_the_last_checkpoint_and_resumes(
    tiny_world: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_config,
) -> None:
    import fastattr.t2i.trainer as train_module

    cfg = tiny_config(steps=3, checkpoint_every=2)
    train(tiny_world, tmp_path / "full", cfg, **_quiet())
    real_loss, calls = train_module.training_loss, []

    def crash_on_third_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "training_loss", crash_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_world, tmp_path / "crash", cfg, **_quiet())
    assert json.loads((tmp_path / "crash" / "train_state.json").read_text())["step"] == 2
    monkeypatch.setattr(train_module, "training_loss", real_loss)
    lines: list[str] = []
    train(tiny_world, tmp_path / "crash", cfg, resume=True, progress=False, threads=1,
          log=lines.append)
    assert any("trained 1 steps" in line for line in lines)
    assert _same(_weights(tmp_path / "full"), _weights(tmp_path / "crash"))


def test_min_snr_and_offset_noise_change_training(tiny_world: Dataset, trained: Path, tmp_path: Path, tiny_config) -> None:
    assert T2IConfig().min_snr_gamma == 5.0 and T2IConfig().offset_noise == 0.1
    for name, change in [("snr", {"min_snr_gamma": 0.0}), ("offset", {"offset_noise": 0.0})]:
        train(tiny_world, tmp_path / name, tiny_config(**change), **_quiet())
        assert not _same(_weights(trained), _weights(tmp_path / name)), name


def test_bf16_precision_trains(tiny_world: Dataset, tmp_path: Path, tiny_config) -> None:
    train(tiny_world, tmp_path / "b", tiny_config(steps=2, precision="bf16"), **_quiet())
    assert load_model(tmp_path / "b")[1].precision == "bf16"


def test_refusals(tiny_world: Dataset, tmp_path: Path, tiny_config) -> None:
    with pytest.raises(DatasetError, match="expects 16x16.*image_size=16"):
        train(tiny_world, tmp_path / "x", T2IConfig.preset("demo", steps=1), **_quiet())
    ds16 = train(tiny_world.path, tmp_path / "x16", tiny_config(steps=1, image_size=16), **_quiet())
    assert ds16.resolution == 16   # a folder is resized to the config's size on load
    with pytest.raises(CheckpointError, match="ema_decay is reserved"):
        train(tiny_world, tmp_path / "x", tiny_config(ema_decay=0.9), **_quiet())
    with pytest.raises(CheckpointError, match="unknown precision"):
        train(tiny_world, tmp_path / "x", tiny_config(precision="fp8"), **_quiet())
    with pytest.raises(DatasetError, match="does not exist"):
        train(tmp_path / "nowhere", tmp_path / "x", tiny_config(), **_quiet())
    make_world(tmp_path / "w", n_items=3, image_size=8)
    (tmp_path / "w" / "images.npy").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="cannot be read"):
        train(tmp_path / "w", tmp_path / "x", tiny_config(), **_quiet())


def test_learning_rate_schedule() -> None:
    cfg = T2IConfig(steps=10, warmup_steps=2, learning_rate=1.0)
    rates = [learning_rate_at(cfg, s) for s in range(10)]
    assert rates[0] == 0.5 and rates[1] == 1.0
    assert all(a >= b for a, b in zip(rates[1:], rates[2:])) and rates[-1] >= 0.1
