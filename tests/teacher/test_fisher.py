"""Tests of fastattr.teacher.fisher (and the per-sample gradients of teacher.layers)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import numpy as np  # noqa: E402

from fastattr.errors import CheckpointError, DatasetError, InputError  # noqa: E402
from fastattr.teacher.fisher import _batches, fit_fisher  # noqa: E402
from fastattr.teacher.layers import PerSampleGrads, find_kv_layers  # noqa: E402


def _autograd_per_sample(model, images, text, batch_size):
    """Slow reference: one backward per sample, plain autograd, no hooks."""
    layers = find_kv_layers(model.unet)
    grads = {name: [] for name in layers}
    for idx, t, noise in _batches(len(images), 1, batch_size, 0, tuple(images.shape[1:]), model.num_train_timesteps):
        for k, i in enumerate(idx.tolist()):
            loss = model.loss(images[i : i + 1], text[i : i + 1], t[k : k + 1], noise[k : k + 1])
            gs = torch.autograd.grad(loss.sum(), [layer.weight for layer in layers.values()])
            for name, g in zip(layers, gs):
                grads[name].append(g.double())
    return {name: torch.stack(v) for name, v in grads.items()}


def test_fit_matches_explicit_per_sample_gradients(tiny) -> None:
    model, images, text = tiny
    fisher = fit_fisher(model, images, text, batch_size=5, progress=False)
    ref = _autograd_per_sample(model, images, text, batch_size=5)
    assert fisher.n_samples == len(images)
    for name, grads in ref.items():
        layer = fisher.layers[name]
        torch.testing.assert_close(layer.diag.double(), grads.pow(2).mean(0), rtol=1e-4, atol=1e-10)
        proj = torch.einsum("go,noi,ia->nga", layer.q_g.double().T, grads, layer.q_a.double())
        torch.testing.assert_close(layer.eigvals.double(), proj.pow(2).mean(0), rtol=1e-4, atol=1e-10)
        # Orthonormal eigenbases: EK-FAC keeps the Fisher's trace (= trace of the diagonal Fisher).
        torch.testing.assert_close(layer.eigvals.sum(), layer.diag.sum(), rtol=1e-4, atol=1e-10)
        eye = torch.eye(layer.q_a.shape[0])
        torch.testing.assert_close(layer.q_a.T @ layer.q_a, eye, rtol=0, atol=1e-5)


def test_token_wise_factors(tiny) -> None:
    model, images, text = tiny
    unet = model.unet
    with PerSampleGrads(unet) as cap:
        t = torch.full((4,), 300)
        model.loss(images[:4], text[:4], t, torch.randn(4, 3, 8, 8)).sum().backward()
        name = next(iter(cap.layers))
        a, g = cap.tokens(name)
        assert a.shape == (4, 3, 32)  # the key/value layers see every text token
        torch.testing.assert_close(a, text[:4])
        per = cap.per_sample()[name]
        torch.testing.assert_close(per.sum(0), cap.layers[name].weight.grad, rtol=1e-4, atol=1e-7)
    unet.zero_grad(set_to_none=True)
    assert all(p.requires_grad for p in unet.parameters())  # flags restored


def test_latent_model_fisher(pipeline_folders) -> None:
    from fastattr.models import load_diffusion_model

    model = load_diffusion_model(pipeline_folders["latent-v"])
    x = model.to_model_space(np.full((3, 16, 16, 3), 127, np.uint8))
    text = model.encode_prompts(["a", "b", "c"])
    fisher = fit_fisher(model, x, text, batch_size=2, progress=False)
    assert fisher.n_samples == 3 and set(fisher.layers) == set(model.kv_layers())
    assert all(bool(torch.isfinite(layer.eigvals).all()) for layer in fisher.layers.values())


def test_errors(tiny) -> None:
    model, images, text = tiny
    unet = model.unet
    with pytest.raises(DatasetError, match="one text state per image"):
        fit_fisher(model, images, text[:3], progress=False)
    with pytest.raises(InputError, match="must be ≥ 1"):
        fit_fisher(model, images, text, draws_per_item=0, progress=False)
    with pytest.raises(CheckpointError, match="no cross-attention key/value layers"):
        find_kv_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with PerSampleGrads(unet) as cap:
        with pytest.raises(CheckpointError, match="no gradient reached"):
            cap.tokens(next(iter(cap.layers)))


def test_eigenbases_step_shares_q_a_between_layers_with_one_input() -> None:
    from fastattr.teacher.fisher import _eigenbases

    gen = torch.Generator().manual_seed(0)
    a, g1, g2 = (torch.randn(4, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    a_other = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    stats = {"k": {"A": a @ a.T, "G": g1 @ g1.T, "tokens": 2}, "v": {"A": a @ a.T, "G": g2 @ g2.T, "tokens": 2},
             "x": {"A": a_other @ a_other.T, "G": g1 @ g1.T, "tokens": 2}}
    bases = _eigenbases(stats)
    assert bases["k"][0] is bases["v"][0]            # the same input: one Q_A, rotated once in pass 2
    assert bases["x"][0] is not bases["k"][0]
    for name, (q_a, q_g) in bases.items():
        assert q_a.dtype == torch.float32
        # Columns are eigenvectors of the mean factors A / tokens and G / tokens.
        for q, m in ((q_a, stats[name]["A"] / 2), (q_g, stats[name]["G"] / 2)):
            rotated = q.double().T @ m @ q.double()
            torch.testing.assert_close(rotated, torch.diag(torch.diagonal(rotated)), rtol=0, atol=1e-5)
