"""Unlearning a query: its averaged loss gradient and one natural-gradient ascent step on the K/V weights."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

import torch

from ..errors import InputError
from .ekfac import KVFisher

if TYPE_CHECKING:
    from ..models import DiffusionModel

__all__ = ["query_gradient", "unlearning_delta", "apply_delta"]


def query_gradient(
    model: "DiffusionModel",
    image: torch.Tensor,
    text_states: torch.Tensor,
    *,
    n_draws: int = 64,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """∇L(ẑ, θ₀) for the key/value weights, averaged over ``n_draws`` (timestep, noise) draws.

    Args:
        model: the model; its training loss (``DiffusionModel.loss``) is differentiated.
        image: (C, H, W) the query's model-space input (``DiffusionModel.to_model_space``).
        text_states: (L, D) the text states of its prompt.
        seed: seeds the draws (timesteps uniform over [0, T), Gaussian noise).

    Example:
        >>> grads = query_gradient(model, x[0], c[0], n_draws=32)  # doctest: +SKIP
    """
    if image.dim() != 3 or text_states.dim() != 2:
        raise InputError(
            f"query_gradient takes one image (C, H, W) and its text states (L, D); got "
            f"{tuple(image.shape)} and {tuple(text_states.shape)}"
        )
    if n_draws < 1:
        raise InputError(f"n_draws must be ≥ 1, got {n_draws}")
    layers = model.kv_layers()
    weights = [layer.weight for layer in layers.values()]
    gen = torch.Generator().manual_seed(seed)
    n_train_t = int(model.num_train_timesteps)
    total = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
    unet = model.unet
    was_training = unet.training
    unet.eval()
    try:
        for start in range(0, n_draws, batch_size):
            b = min(batch_size, n_draws - start)
            t = torch.randint(0, n_train_t, (b,), generator=gen)
            noise = torch.randn((b, *image.shape), generator=gen)
            x = image.unsqueeze(0).expand(b, *image.shape)
            c = text_states.unsqueeze(0).expand(b, *text_states.shape)
            with torch.enable_grad():
                loss = model.loss(x, c, t, noise).sum()
                # autograd.grad with explicit inputs prunes the weight gradients of every other layer.
                grads = torch.autograd.grad(loss, weights)
            for acc, g in zip(total, grads):
                acc += g.double()
    finally:
        unet.train(was_training)
    return {name: (acc / n_draws).float() for name, acc in zip(layers, total)}


def unlearning_delta(
    fisher: KVFisher,
    grads: dict[str, torch.Tensor],
    *,
    eta: float,
    n_train: int,
    kind: str = "ekfac",
) -> dict[str, torch.Tensor]:
    """The ascent step Δ = (η/N) · F⁻¹ ∇L(ẑ, θ₀), so that θ₋ = θ₀ + Δ (DESIGN.md §2.3).

    Example:
        >>> delta = unlearning_delta(fisher, grads, eta=1.0, n_train=2000)  # doctest: +SKIP
    """
    if n_train < 1:
        raise InputError(f"n_train (training-set size) must be ≥ 1, got {n_train}")
    if not eta > 0:
        raise InputError(f"the unlearning step size eta must be > 0, got {eta}")
    step = fisher.inverse_vector_product(grads, kind=kind)
    return {name: v * (eta / n_train) for name, v in step.items()}


@contextlib.contextmanager
def apply_delta(model: "DiffusionModel", delta: dict[str, torch.Tensor]) -> Iterator["DiffusionModel"]:
    """Temporarily set the key/value weights to θ₀ + Δ in place; restore θ₀ bit-exactly on exit.

    Curation workers use this on their own private copy of the model, so the same tensors serve
    every query without a deep copy each time.
    """
    layers = model.kv_layers()
    unknown = sorted(set(delta) - set(layers))
    if unknown:
        raise InputError(f"apply_delta: layers {unknown[:3]} are not key/value layers of this model")
    saved = {name: layers[name].weight.detach().clone() for name in delta}
    try:
        with torch.no_grad():
            for name, d in delta.items():
                layers[name].weight.add_(d.to(layers[name].weight.dtype))
        yield model
    finally:
        with torch.no_grad():
            for name, w in saved.items():
                layers[name].weight.copy_(w)
