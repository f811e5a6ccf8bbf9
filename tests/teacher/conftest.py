"""Tiny text-conditioned UNets and data for the teacher tests (offline, seconds)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


def make_tiny_unet(seed: int = 0, cross_dim: int = 6):
    """A ~20k-parameter UNet2DConditionModel with Stable Diffusion's module names."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_dim,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    return unet.eval()


def make_alphas_cumprod(n: int = 100):
    betas = torch.linspace(1e-4, 0.02 * 1000 / n, n)
    return torch.cumprod(1.0 - betas, dim=0)


@pytest.fixture(scope="session")
def tiny():
    """(unet, alphas_cumprod, images (12,3,8,8), text states (12,3,6)) with distinct items."""
    # One thread: these tiny ops gain nothing from more, and a loaded CI box makes OpenMP crawl.
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand((12, 3, 8, 8), generator=gen) * 2 - 1
    text = torch.randn((12, 3, 6), generator=gen)
    return make_tiny_unet(), make_alphas_cumprod(), images, text
