"""Tests of fastattr.teacher.unlearn: the step raises the query's loss and leaves θ₀ untouched."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fastattr.errors import InputError  # noqa: E402
from fastattr.teacher.fisher import fit_fisher  # noqa: E402
from fastattr.teacher.layers import kv_weights  # noqa: E402
from fastattr.teacher.scoring import grid_losses, item_noise, timestep_grid  # noqa: E402
from fastattr.teacher.unlearn import apply_delta, query_gradient, unlearned_copy, unlearning_delta  # noqa: E402


@pytest.mark.parametrize("kind", ["ekfac", "diag"])
def test_unlearning_raises_query_loss_and_keeps_original(tiny, kind: str) -> None:
    unet, ac, images, text = tiny
    fisher = fit_fisher(unet, images, text, ac, batch_size=12, progress=False)
    before_weights = {k: v.clone() for k, v in kv_weights(unet).items()}
    before_state = {k: v.clone() for k, v in unet.state_dict().items()}
    grads = query_gradient(unet, images[0], text[0], ac, n_draws=32, seed=3)
    delta = unlearning_delta(fisher, grads, eta=0.01, n_train=len(images), kind=kind)
    minus = unlearned_copy(unet, delta)
    ts = timestep_grid(8, len(ac))
    noise = item_noise([0], ts, (3, 8, 8), seed=0)
    l0 = grid_losses(unet, images[:1], text[:1], noise, ts, ac).mean()
    l1 = grid_losses(minus, images[:1], text[:1], noise, ts, ac).mean()
    assert l1 > l0
    for k, v in unet.state_dict().items():
        assert torch.equal(v, before_state[k])
    # apply_delta gives the same model as the copy and restores θ₀ bit-exactly.
    with apply_delta(unet, delta):
        l2 = grid_losses(unet, images[:1], text[:1], noise, ts, ac).mean()
    assert torch.equal(l1, l2)
    for k, v in kv_weights(unet).items():
        assert torch.equal(v, before_weights[k])


def test_query_gradient_is_deterministic(tiny) -> None:
    unet, ac, images, text = tiny
    g1 = query_gradient(unet, images[1], text[1], ac, n_draws=10, batch_size=4, seed=7)
    g2 = query_gradient(unet, images[1], text[1], ac, n_draws=10, batch_size=4, seed=7)
    for k in g1:
        assert torch.equal(g1[k], g2[k])


def test_errors(tiny) -> None:
    unet, ac, images, text = tiny
    with pytest.raises(InputError, match="one image"):
        query_gradient(unet, images[:2], text[0], ac)
    with pytest.raises(InputError, match="n_draws"):
        query_gradient(unet, images[0], text[0], ac, n_draws=0)
    fisher = fit_fisher(unet, images[:4], text[:4], ac, progress=False)
    grads = {k: torch.zeros_like(v) for k, v in kv_weights(unet).items()}
    with pytest.raises(InputError, match="eta"):
        unlearning_delta(fisher, grads, eta=0.0, n_train=4)
    with pytest.raises(InputError, match="n_train"):
        unlearning_delta(fisher, grads, eta=1.0, n_train=0)
    with pytest.raises(InputError, match="not key/value layers"):
        unlearned_copy(unet, {"conv_in": torch.zeros(1)})
    with pytest.raises(InputError, match="not key/value layers"):
        with apply_delta(unet, {"conv_in": torch.zeros(1)}):
            pass
