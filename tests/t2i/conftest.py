"""Shared tiny fixtures for the t2i tests: an 8x8 world, a tiny text encoder and the tiny model config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fastattr.world import Dataset, make_world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return make_world(tmp_path_factory.mktemp("t2i") / "world", n_items=12, seed=0, image_size=8)


@pytest.fixture(scope="session")
def text_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _pipelines import tiny_text_folder

    return tiny_text_folder(tmp_path_factory.mktemp("t2i") / "text")


@pytest.fixture(scope="session")
def tiny_config(text_folder: Path):
    """T2IConfig.preset("tiny", ...) over the tiny text encoder (32-wide states), at the 8x8 of tiny_world."""
    from fastattr.t2i import T2IConfig

    def make(**overrides):
        overrides = {"image_size": 8, **overrides}
        config = T2IConfig.preset("tiny", text_encoder=str(text_folder), text_max_length=24, **overrides)
        return dataclasses.replace(config, unet={**config.unet, "cross_attention_dim": 32})
    return make


@pytest.fixture(scope="session")
def trained(tiny_world: Dataset, tiny_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fastattr.t2i import train

    out = tmp_path_factory.mktemp("t2i") / "model"
    train(tiny_world, out, tiny_config(), progress=False, log=lambda s: None, threads=1)
    return out
