"""Tests for t2i/model.py: schedule, loss, input conversion, module names, save/load, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fastattr.errors import CheckpointError, InputError
from fastattr.t2i import T2IConfig, T2IModel, load_model, loss, save_model, to_model_input
from fastattr.t2i.model import alphas_cumprod_for


@pytest.fixture()
def model() -> T2IModel:
    return T2IModel.create(T2IConfig.preset("tiny"))


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_schedules_decrease_from_one_to_zero(schedule: str) -> None:
    a = alphas_cumprod_for(schedule, 1000)
    assert a.dtype == torch.float32 and a.shape == (1000,)
    assert bool((a[1:] < a[:-1]).all()) and 0.99 < float(a[0]) <= 1 and float(a[-1]) < 0.01
    with pytest.raises(CheckpointError, match="unknown beta_schedule"):
        alphas_cumprod_for("sigmoid", 10)


def test_to_model_input_range_and_refusal() -> None:
    x = to_model_input(np.array([[[[0, 255, 51]]]], np.uint8))
    assert x.shape == (1, 3, 1, 1) and x.dtype == torch.float32
    assert x.flatten().tolist() == pytest.approx([-1.0, 1.0, 51 / 127.5 - 1])
    with pytest.raises(InputError, match="must be uint8"):
        to_model_input(np.zeros((1, 2, 2, 3), np.float32))


def test_module_names_match_stable_diffusion(model: T2IModel) -> None:
    names = [n for n, _ in model.unet.named_modules()]
    keys = [n for n in names if n.endswith("attn2.to_k")]
    values = [n for n in names if n.endswith("attn2.to_v")]
    assert keys and len(keys) == len(values)
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k" in keys
    layer = dict(model.unet.named_modules())[keys[0]]
    assert layer.in_features == 384  # MiniLM's hidden size: the text states go straight in


def test_loss_is_the_noise_prediction_error(model: T2IModel) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((3, 3, 8, 8), generator=g) * 2 - 1
    states = torch.randn((3, 5, 384), generator=g)
    t = torch.tensor([0, 400, 999])
    noise = torch.randn((3, 3, 8, 8), generator=g)
    value = loss(model.unet, x, states, t, noise, model.alphas_cumprod)
    a = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    pred = model.unet(a.sqrt() * x + (1 - a).sqrt() * noise, t, encoder_hidden_states=states).sample
    assert value.shape == (3,)
    torch.testing.assert_close(value, ((pred - noise) ** 2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(value, loss(model.unet, x, states, t, noise, model.alphas_cumprod))
    value.sum().backward()
    grad = dict(model.unet.named_parameters())[
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"].grad
    assert grad is not None and float(grad.abs().sum()) > 0


def test_init_is_seeded() -> None:
    a = T2IModel.create(T2IConfig.preset("tiny", seed=1)).unet.state_dict()
    b = T2IModel.create(T2IConfig.preset("tiny", seed=1)).unet.state_dict()
    c = T2IModel.create(T2IConfig.preset("tiny", seed=2)).unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_save_load_round_trip(model: T2IModel, tmp_path: Path) -> None:
    save_model(tmp_path / "m", model, train_state={"step": 3, "seed": 0})
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config and loaded.image_size == 8
    assert loaded.num_train_timesteps == 1000
    torch.testing.assert_close(loaded.alphas_cumprod, model.alphas_cumprod)
    sd, ld = model.unet.state_dict(), loaded.unet.state_dict()
    assert sd.keys() == ld.keys() and all(torch.equal(sd[k], ld[k]) for k in sd)
    assert json.loads((tmp_path / "m" / "train_state.json").read_text())["step"] == 3


def test_load_refusals(model: T2IModel, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    root = save_model(tmp_path / "m", model)
    (root / "unet.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_model(root)
    (root / "unet.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no unet.safetensors"):
        load_model(root)
    (root / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(root)
    (root / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(root)


def test_config_refusals_and_mismatched_weights(model: T2IModel, tmp_path: Path) -> None:
    root = save_model(tmp_path / "m", model)
    config = json.loads((root / "config.json").read_text())
    for change, message in [({"format": "x"}, "does not declare format"),
                            ({"version": 7}, "has version 7"),
                            ({"colour": 1}, "unknown fields")]:
        (root / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(CheckpointError, match=message):
            load_model(root)
    bigger = dict(config, unet={**config["unet"], "block_out_channels": [8, 32]})
    (root / "config.json").write_text(json.dumps(bigger))
    with pytest.raises(CheckpointError, match="does not match config.json"):
        load_model(root)
    with pytest.raises(CheckpointError, match="unknown t2i preset"):
        T2IConfig.preset("huge")
