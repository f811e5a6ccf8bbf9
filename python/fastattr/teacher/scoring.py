"""Teacher scores: loss change of each candidate on a fixed timestep grid with per-item fixed noise."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..errors import InputError

if TYPE_CHECKING:
    from ..models import DiffusionModel

__all__ = [
    "seed_of",
    "timestep_grid",
    "item_noise",
    "grid_losses",
    "scores_from_losses",
]

def seed_of(*parts: object) -> int:
    """A 63-bit seed that is a deterministic function of ``parts`` (stable across processes).

    Python's ``hash`` is salted per process; a cryptographic digest is not.

    Example:
        >>> seed_of(0, "item", 5, 250) == seed_of(0, "item", 5, 250)
        True
    """
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def timestep_grid(n_timesteps: int, num_train_timesteps: int) -> torch.Tensor:
    """``n_timesteps`` equally spaced timesteps, each at the centre of its 1/n slice of [0, T).

    Example:
        >>> timestep_grid(4, 1000).tolist()
        [125, 375, 625, 875]
    """
    if not 1 <= n_timesteps <= num_train_timesteps:
        raise InputError(
            f"timestep grid size {n_timesteps} must be in [1, {num_train_timesteps}] "
            "(the model's number of training timesteps)"
        )
    return ((torch.arange(n_timesteps, dtype=torch.float64) + 0.5) * num_train_timesteps / n_timesteps).long()


def item_noise(
    item_ids: Sequence[int] | np.ndarray,
    timesteps: Sequence[int] | torch.Tensor,
    shape: Sequence[int],
    *,
    seed: int,
) -> torch.Tensor:
    """Noise for every (item, timestep): a deterministic function of (seed, item id, timestep).

    Returns (n_items, n_timesteps, *shape) float32. The same item gets the same noise in every
    process and every query, so losses before unlearning can be computed once and cached.

    Example:
        >>> item_noise([3], [125], (3, 2, 2), seed=0).shape
        torch.Size([1, 1, 3, 2, 2])
    """
    ts = [int(t) for t in timesteps]
    out = torch.empty((len(item_ids), len(ts), *shape), dtype=torch.float32)
    gen = torch.Generator()
    for i, item in enumerate(item_ids):
        for j, t in enumerate(ts):
            gen.manual_seed(seed_of(seed, "noise", int(item), t))
            out[i, j] = torch.randn(tuple(shape), generator=gen)
    return out


@torch.inference_mode()
def grid_losses(
    model: "DiffusionModel",
    images: torch.Tensor,
    text_states: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    batch_size: int = 256,
    flip: bool = False,
    autocast_bf16: bool = False,
) -> torch.Tensor:
    """Loss of every item at every grid timestep with its fixed noise: (n_items, n_timesteps).

    Items × timesteps are flattened into batches of ``batch_size`` samples; the batching is a
    function of the inputs only, so before/after-unlearning passes over the same items do the
    same arithmetic.

    Args:
        model: the model whose training loss is evaluated (``DiffusionModel.loss``).
        images: (n, C, H, W) model-space inputs (``DiffusionModel.to_model_space``).
        text_states: (n, L, D) frozen text states of the captions.
        noise: (n, n_timesteps, C, H, W) from :func:`item_noise`.
        flip: score the horizontally flipped inputs (same noise; a latent's flip stands in for
            the flipped image's latent).
        autocast_bf16: run the UNet under CPU bf16 autocast (faster; changes the numbers).
    """
    n, n_t = images.shape[0], timesteps.shape[0]
    if noise.shape[:2] != (n, n_t) or text_states.shape[0] != n:
        raise InputError(
            f"grid_losses: images ({n}), text states ({text_states.shape[0]}) and noise "
            f"{tuple(noise.shape[:2])} disagree with {n} items × {n_t} timesteps"
        )
    if flip:
        images = images.flip(-1)
    flat_noise = noise.reshape(n * n_t, *noise.shape[2:])
    item_of = torch.arange(n).repeat_interleave(n_t)
    t_of = timesteps.repeat(n)
    out = torch.empty(n * n_t, dtype=torch.float32)
    for start in range(0, n * n_t, batch_size):
        sl = slice(start, start + batch_size)
        idx = item_of[sl]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
            losses = model.loss(images[idx], text_states[idx], t_of[sl], flat_noise[sl])
        out[sl] = losses.float()
    return out.view(n, n_t)


def scores_from_losses(
    after: torch.Tensor,
    before: torch.Tensor,
    after_flip: torch.Tensor | None = None,
    before_flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """τ = mean_t L(z, θ₋) − mean_t L(z, θ₀); with flips, the max of the two images' τ.

    Example:
        >>> scores_from_losses(torch.ones(2, 3), torch.zeros(2, 3)).tolist()
        [1.0, 1.0]
    """
    tau = after.double().mean(dim=1) - before.double().mean(dim=1)
    if after_flip is not None and before_flip is not None:
        tau = torch.maximum(tau, after_flip.double().mean(dim=1) - before_flip.double().mean(dim=1))
    return tau.float()
