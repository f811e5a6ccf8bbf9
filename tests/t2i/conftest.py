"""Shared tiny fixtures for the t2i tests: an 8x8 world and the tiny model config."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastattr.world import Dataset, make_world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return make_world(tmp_path_factory.mktemp("t2i") / "world", n_items=12, seed=0, image_size=8)


@pytest.fixture(scope="session")
def trained(tiny_world: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fastattr.t2i import T2IConfig, train

    out = tmp_path_factory.mktemp("t2i") / "model"
    train(tiny_world, out, T2IConfig.preset("tiny"), progress=False, log=lambda s: None, threads=1)
    return out
