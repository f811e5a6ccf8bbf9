"""Tests for t2i/model.py: the pipeline folder it builds, saves and loads, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastattr.errors import CheckpointError
from fastattr.models import DiffusersModel, load_diffusion_model
from fastattr.t2i import T2IConfig, build_pipeline, load_model, save_model


def test_module_names_match_stable_diffusion(tiny_config) -> None:
    pipe = build_pipeline(tiny_config())
    keys = [n for n, _ in pipe.unet.named_modules() if n.endswith("attn2.to_k")]
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k" in keys
    assert dict(pipe.unet.named_modules())[keys[0]].in_features == 32  # the text states go straight in


def test_scheduler_is_diffusers_ddim_with_the_config_schedule(tiny_config) -> None:
    from diffusers import DDIMScheduler

    pipe = build_pipeline(tiny_config(prediction_type="v_prediction"))
    assert isinstance(pipe.scheduler, DDIMScheduler)
    cfg = pipe.scheduler.config
    assert (cfg.beta_schedule, cfg.prediction_type, cfg.clip_sample, cfg.timestep_spacing) == (
        "squaredcos_cap_v2", "v_prediction", True, "trailing")
    assert DiffusersModel(pipe).prediction_type == "v_prediction"


def test_init_is_seeded(tiny_config) -> None:
    a = build_pipeline(tiny_config(seed=1)).unet.state_dict()
    b = build_pipeline(tiny_config(seed=1)).unet.state_dict()
    c = build_pipeline(tiny_config(seed=2)).unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_save_load_round_trip_is_a_diffusers_folder(tiny_config, tmp_path: Path) -> None:
    config = tiny_config()
    pipe = build_pipeline(config)
    save_model(tmp_path / "m", pipe, config, train_state={"step": 3, "seed": 0})
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"model_index.json", "unet", "scheduler", "text_encoder", "tokenizer", "t2i_config.json",
            "train_state.json"} <= names
    model, loaded = load_model(tmp_path / "m")
    assert loaded == config and model.resolution == 8 and not model.latent
    sd, ld = pipe.unet.state_dict(), model.unet.state_dict()
    assert sd.keys() == ld.keys() and all(torch.equal(sd[k], ld[k]) for k in sd)
    assert load_diffusion_model(tmp_path / "m").digest() == model.digest()
    assert json.loads((tmp_path / "m" / "train_state.json").read_text())["step"] == 3


def test_load_refusals(tiny_config, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    config = tiny_config()
    root = save_model(tmp_path / "m", build_pipeline(config), config)
    saved = json.loads((root / "t2i_config.json").read_text())
    for change, message in [({"format": "x"}, "does not declare format"),
                            ({"version": 7}, "has version 7"),
                            ({"colour": 1}, "unknown fields")]:
        (root / "t2i_config.json").write_text(json.dumps({**saved, **change}))
        with pytest.raises(CheckpointError, match=message):
            load_model(root)
    (root / "t2i_config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(root)
    (root / "t2i_config.json").unlink()
    with pytest.raises(CheckpointError, match="no t2i_config.json"):
        load_model(root)
    (root / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="cannot load the pipeline"):
        load_diffusion_model(root)
    with pytest.raises(CheckpointError, match="unknown t2i preset"):
        T2IConfig.preset("huge")


def test_preset_unet_follows_the_image_size() -> None:
    assert T2IConfig.preset("demo", image_size=28).unet["sample_size"] == 28
    assert T2IConfig.preset("demo").unet["sample_size"] == 16
    with pytest.raises(CheckpointError, match="does not suit"):
        T2IConfig.preset("full", image_size=30)


def test_text_width_must_match_cross_attention(tiny_config) -> None:
    import dataclasses

    config = tiny_config()
    with pytest.raises(CheckpointError, match="cross_attention_dim is 48"):
        build_pipeline(dataclasses.replace(config, unet={**config.unet, "cross_attention_dim": 48}))
