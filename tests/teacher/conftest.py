"""Tiny diffusers pipelines (pixel and latent) and data for the teacher tests (offline, seconds)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.fixture(scope="session")
def pipeline_folders(tmp_path_factory):
    """name -> folder of a tiny pipeline saved with save_pretrained (see tests/_pipelines.py)."""
    from _pipelines import PIPELINES

    root = tmp_path_factory.mktemp("pipelines")
    return {name: make(root / name) for name, make in PIPELINES.items()}


@pytest.fixture(scope="session")
def tiny(pipeline_folders):
    """(pixel-space model, model-space inputs (12,3,8,8), text states (12,3,32)) with distinct items."""
    from fastattr.models import load_diffusion_model

    # One thread: these tiny ops gain nothing from more, and a loaded CI box makes OpenMP crawl.
    torch.set_num_threads(1)
    model = load_diffusion_model(pipeline_folders["pixel"])
    gen = torch.Generator().manual_seed(1)
    images = torch.rand((12, 3, 8, 8), generator=gen) * 2 - 1
    text = torch.randn((12, 3, 32), generator=gen)
    return model, images, text
