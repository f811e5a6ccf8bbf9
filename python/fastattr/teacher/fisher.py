"""Fitting the key/value Fisher (diagonal and EK-FAC) from per-sample gradients of the training loss."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import torch

from .._progress import make_progress
from ..errors import DatasetError, InputError
from .ekfac import KVFisher, LayerFisher
from .layers import PerSampleGrads
from .scoring import seed_of

if TYPE_CHECKING:
    from ..models import DiffusionModel

__all__ = ["fit_fisher"]


def _batches(
    n_items: int, draws_per_item: int, batch_size: int, seed: int, shape: tuple[int, ...], n_train_t: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    # Each batch's (timestep, noise) draw is seeded by its position, so the second EK-FAC pass
    # sees exactly the samples the first pass used for the Kronecker factors.
    for draw in range(draws_per_item):
        for start in range(0, n_items, batch_size):
            idx = torch.arange(start, min(start + batch_size, n_items))
            gen = torch.Generator().manual_seed(seed_of(seed, "fisher", draw, start))
            t = torch.randint(0, n_train_t, (len(idx),), generator=gen)
            noise = torch.randn((len(idx), *shape), generator=gen)
            yield idx, t, noise


def _rows(array: Any, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` (contiguous) of a tensor or a (memory-mapped) array, as float32 torch."""
    if isinstance(array, torch.Tensor):
        return array[idx].float()
    lo, hi = int(idx[0]), int(idx[-1]) + 1
    import numpy as np

    return torch.from_numpy(np.array(array[lo:hi], dtype=np.float32))


def fit_fisher(
    model: "DiffusionModel",
    images: Any,
    text_states: Any,
    *,
    draws_per_item: int = 1,
    batch_size: int = 64,
    seed: int = 0,
    damping_factor: float = 0.1,
    progress: bool = True,
) -> KVFisher:
    """Fit the diagonal and EK-FAC Fisher of the cross-attention key/value weights.

    One sample is one (training item, timestep, noise) draw of the DDPM loss. Pass 1 gathers,
    token-wise, A = E[a aᵀ] and G = E[g gᵀ] (the standard KFAC treatment of a layer shared across
    text tokens; their scale does not matter because Λ is refitted) and the diagonal
    E[(∇W)²] from per-sample gradients ∇W = Σ_t g_t a_tᵀ. After the eigendecompositions, pass 2
    replays the same draws to fit the eigenvalue correction Λ = E[(Q_Gᵀ ∇W Q_A)²].

    Args:
        model: the model whose training loss (``DiffusionModel.loss``) defines the Fisher.
        images: (N, C, H, W) model-space inputs of the training items (a tensor or a
            memory-mapped array: only one batch at a time is read).
        text_states: (N, L, D) text states of their captions (tensor or array, likewise).
        draws_per_item: (timestep, noise) draws per training item.

    Example:
        >>> fisher = fit_fisher(model, x, c, draws_per_item=2)  # doctest: +SKIP
        >>> fisher.save("fisher.safetensors")  # doctest: +SKIP
    """
    n = _check_inputs(images, text_states, draws_per_item, batch_size)
    unet = model.unet
    layers = model.kv_layers()
    shape, n_t = tuple(images.shape[1:]), int(model.num_train_timesteps)
    n_batches = draws_per_item * ((n + batch_size - 1) // batch_size)
    stats = _zero_stats(layers)

    def draws(pass_no: int) -> Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        # The same draws in both passes: _batches seeds each batch by its position.
        return make_progress(_batches(n, draws_per_item, batch_size, seed, shape, n_t), total=n_batches,
                             desc=f"Fisher pass {pass_no}/2", unit="batch", disable=not progress)

    was_training = unet.training
    unet.eval()
    try:
        with PerSampleGrads(unet) as cap:
            n_samples = _sweep(model, cap, list(layers), images, text_states, draws(1),
                               functools.partial(_add_factors, stats))
            bases = _eigenbases(stats)
            _sweep(model, cap, list(layers), images, text_states, draws(2),
                   functools.partial(_add_eigvals, stats, bases))
    finally:
        unet.zero_grad(set_to_none=True)
        unet.train(was_training)
    return _layer_fishers(stats, bases, n_samples, damping_factor)


def _check_inputs(images: Any, text_states: Any, draws_per_item: int, batch_size: int) -> int:
    """The number of training items N, once the inputs and sizes are known to fit together."""
    n = images.shape[0]
    if n == 0 or text_states.shape[0] != n:
        raise DatasetError(
            f"fit_fisher needs one text state per image: got {n} images and "
            f"{text_states.shape[0]} text states"
        )
    if draws_per_item < 1 or batch_size < 1:
        raise InputError(f"draws_per_item ({draws_per_item}) and batch_size ({batch_size}) must be ≥ 1")
    return int(n)


def _zero_stats(layers: dict[str, torch.nn.Linear]) -> dict[str, dict[str, Any]]:
    """Per layer: the running sums A = Σ a aᵀ, G = Σ g gᵀ (token-wise), diag = Σ (∇W)², eig = Σ
    (Q_Gᵀ ∇W Q_A)², and the token count that A and G are divided by."""
    return {
        name: {
            "A": torch.zeros(layer.in_features, layer.in_features, dtype=torch.float64),
            "G": torch.zeros(layer.out_features, layer.out_features, dtype=torch.float64),
            "diag": torch.zeros(layer.out_features, layer.in_features, dtype=torch.float64),
            "eig": torch.zeros(layer.out_features, layer.in_features, dtype=torch.float64),
            "tokens": 0,
        }
        for name, layer in layers.items()
    }


def _sweep(model: "DiffusionModel", cap: PerSampleGrads, layer_names: list[str], images: Any, text_states: Any,
           batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
           accumulate: Callable[[str, torch.Tensor, torch.Tensor, dict], None]) -> int:
    """One pass over the draws: per batch, the loss's per-sample K/V inputs and output gradients,
    handed to ``accumulate(layer name, a, g, shared)`` for each of ``layer_names``. Returns the
    number of samples.

    ``shared`` is emptied per batch: every K/V layer usually reads the same text-state tensor, so
    products of the inputs are computed once per distinct input (and eigenbasis) per batch.
    """
    unet = model.unet
    n_samples = 0
    for idx, t, noise in batches:
        cap.clear()
        unet.zero_grad(set_to_none=True)
        x, c = _rows(images, idx), _rows(text_states, idx)
        model.loss(x, c, t, noise).sum().backward()
        shared: dict[tuple[int, int], torch.Tensor] = {}
        for name in layer_names:
            a, g = cap.tokens(name)
            accumulate(name, a, g, shared)
        n_samples += len(idx)
    return n_samples


def _add_factors(stats: dict[str, dict[str, Any]], name: str, a: torch.Tensor, g: torch.Tensor,
                 shared: dict[tuple[int, int], torch.Tensor]) -> None:
    """Pass 1: the Kronecker factors' sums and the diagonal E[(∇W)²] with ∇W = Σ_t g_t a_tᵀ."""
    st = stats[name]
    key = (a.data_ptr(), 0)
    if key not in shared:
        a2 = a.reshape(-1, a.shape[-1])
        shared[key] = (a2.T @ a2).double()
    g2 = g.reshape(-1, g.shape[-1])
    st["A"] += shared[key]
    st["G"] += (g2.T @ g2).double()
    st["tokens"] += a.shape[0] * a.shape[1]
    st["diag"] += torch.einsum("blo,bli->boi", g, a).double().pow(2).sum(0)


def _eigenbases(stats: dict[str, dict[str, Any]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(Q_A, Q_G) per layer from the pass-1 factors; layers with identical A (the same input)
    share one Q_A object, so pass 2 rotates their inputs once."""
    bases: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    eig_a: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name, st in stats.items():
        # eigh of symmetric PSD matrices; the eigenvalues are discarded (EK-FAC refits them).
        a_mean = st["A"] / st["tokens"]
        q_a = next((q for m, q in eig_a if torch.equal(m, a_mean)), None)
        if q_a is None:
            q_a = torch.linalg.eigh(a_mean)[1].float()
            eig_a.append((a_mean, q_a))
        q_g = torch.linalg.eigh(st["G"] / st["tokens"])[1].float()
        bases[name] = (q_a, q_g)
    return bases


def _add_eigvals(stats: dict[str, dict[str, Any]], bases: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 name: str, a: torch.Tensor, g: torch.Tensor, shared: dict[tuple[int, int], torch.Tensor]) -> None:
    """Pass 2: the eigenvalue correction's sum Σ (Q_Gᵀ ∇W Q_A)²."""
    q_a, q_g = bases[name]
    key = (a.data_ptr(), id(q_a))
    if key not in shared:
        shared[key] = a @ q_a
    # Q_Gᵀ (Σ_t g_t a_tᵀ) Q_A = Σ_t (Q_Gᵀ g_t)(Q_Aᵀ a_t)ᵀ: rotate the tokens first.
    proj = torch.einsum("blo,bli->boi", g @ q_g, shared[key])
    stats[name]["eig"] += proj.double().pow(2).sum(0)


def _layer_fishers(stats: dict[str, dict[str, Any]], bases: dict[str, tuple[torch.Tensor, torch.Tensor]],
                   n_samples: int, damping_factor: float) -> KVFisher:
    """The fitted Fisher: each layer's eigenbases, Λ = E[(Q_Gᵀ ∇W Q_A)²] and diagonal, per sample."""
    fitted = {
        name: LayerFisher(
            q_a=bases[name][0].clone(),
            q_g=bases[name][1].clone(),
            eigvals=(st["eig"] / n_samples).float(),
            diag=(st["diag"] / n_samples).float(),
        )
        for name, st in stats.items()
    }
    return KVFisher(layers=fitted, n_samples=n_samples, damping_factor=damping_factor)
