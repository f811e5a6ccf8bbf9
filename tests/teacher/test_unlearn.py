"""Tests of fastattr.teacher.unlearn: the step raises the query's loss and leaves θ₀ untouched."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fastattr.errors import InputError  # noqa: E402
from fastattr.teacher.fisher import fit_fisher  # noqa: E402
from fastattr.teacher.layers import kv_weights  # noqa: E402
from fastattr.teacher.unlearn import apply_delta, query_gradient, unlearning_delta  # noqa: E402


def _query_objective(model, x, c, *, n_draws: int, seed: int) -> torch.Tensor:
    """The query loss at exactly the (t, noise) draws query_gradient makes with one batch."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.randint(0, model.num_train_timesteps, (n_draws,), generator=gen)
    noise = torch.randn((n_draws, *x.shape), generator=gen)
    with torch.no_grad():
        return model.loss(x.expand(n_draws, *x.shape), c.expand(n_draws, *c.shape), t, noise).mean()


@pytest.mark.parametrize("kind", ["ekfac", "diag"])
def test_unlearning_raises_query_loss_and_keeps_original(tiny, kind: str) -> None:
    model, images, text = tiny
    unet = model.unet
    fisher = fit_fisher(model, images, text, batch_size=12, progress=False)
    before_state = {k: v.clone() for k, v in unet.state_dict().items()}
    grads = query_gradient(model, images[0], text[0], n_draws=32, batch_size=32, seed=3)
    # A small step: to first order the objective rises by (η/N) gᵀF⁻¹g > 0.
    delta = unlearning_delta(fisher, grads, eta=1e-4, n_train=len(images), kind=kind)
    l0 = _query_objective(model, images[0], text[0], n_draws=32, seed=3)
    with apply_delta(model, delta):
        changed = kv_weights(unet)
        l1 = _query_objective(model, images[0], text[0], n_draws=32, seed=3)
    assert l1 > l0
    # ... and descending instead lowers it: the sign is not an accident of the draws.
    with apply_delta(model, {k: -v for k, v in delta.items()}):
        assert _query_objective(model, images[0], text[0], n_draws=32, seed=3) < l0
    name = next(iter(delta))
    torch.testing.assert_close(changed[name], before_state[name + ".weight"] + delta[name])
    # θ₀ comes back bit-exactly, every weight.
    for k, v in unet.state_dict().items():
        assert torch.equal(v, before_state[k])


def test_query_gradient_is_deterministic(tiny) -> None:
    model, images, text = tiny
    g1 = query_gradient(model, images[1], text[1], n_draws=10, batch_size=4, seed=7)
    g2 = query_gradient(model, images[1], text[1], n_draws=10, batch_size=4, seed=7)
    for k in g1:
        assert torch.equal(g1[k], g2[k])


def test_errors(tiny) -> None:
    model, images, text = tiny
    with pytest.raises(InputError, match="one image"):
        query_gradient(model, images[:2], text[0])
    with pytest.raises(InputError, match="n_draws"):
        query_gradient(model, images[0], text[0], n_draws=0)
    fisher = fit_fisher(model, images[:4], text[:4], progress=False)
    grads = {k: torch.zeros_like(v) for k, v in kv_weights(model.unet).items()}
    with pytest.raises(InputError, match="eta"):
        unlearning_delta(fisher, grads, eta=0.0, n_train=4)
    with pytest.raises(InputError, match="n_train"):
        unlearning_delta(fisher, grads, eta=1.0, n_train=0)
    with pytest.raises(InputError, match="not key/value layers"):
        with apply_delta(model, {"conv_in": torch.zeros(1)}):
            pass
