"""Tests of fastattr.teacher.scoring: fixed grid, per-item noise, grid losses, τ."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from fastattr.errors import InputError  # noqa: E402
from fastattr.teacher.scoring import (  # noqa: E402
    grid_losses,
    item_noise,
    scores_from_losses,
    seed_of,
    timestep_grid,
)


def test_grid_and_noise_are_deterministic() -> None:
    assert timestep_grid(4, 1000).tolist() == [125, 375, 625, 875]
    a = item_noise([3, 9], [10, 20], (3, 2, 2), seed=0)
    b = item_noise([9], [20], (3, 2, 2), seed=0)
    assert torch.equal(a[1, 1], b[0, 0])  # a function of (item, timestep) only, not of the batch
    assert not torch.equal(a[0, 0], a[0, 1]) and not torch.equal(a[0, 0], a[1, 0])
    # Stable across processes (Python's hash() is salted per process; seed_of is not).
    code = "from fastattr.teacher.scoring import seed_of; print(seed_of(0, 'noise', 5, 250))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == seed_of(0, "noise", 5, 250)


def test_grid_losses_match_direct_loss_and_flip(tiny) -> None:
    model, images, text = tiny
    ts = timestep_grid(3, model.num_train_timesteps)
    noise = item_noise(range(5), ts, (3, 8, 8), seed=1)
    got = grid_losses(model, images[:5], text[:5], noise, ts, batch_size=4)
    with torch.no_grad():
        direct = model.loss(images[2:3].expand(3, -1, -1, -1), text[2:3].expand(3, -1, -1), ts, noise[2])
    torch.testing.assert_close(got[2], direct, rtol=1e-5, atol=1e-6)
    flipped = grid_losses(model, images[:5], text[:5], noise, ts, flip=True)
    ref = grid_losses(model, images[:5].flip(-1), text[:5], noise, ts)
    torch.testing.assert_close(flipped, ref)


def test_scores_from_losses_flip_max() -> None:
    after, before = torch.tensor([[2.0, 2.0], [1.0, 1.0]]), torch.ones(2, 2)
    after_f = torch.tensor([[1.5, 1.5], [3.0, 3.0]])
    assert scores_from_losses(after, before).tolist() == [1.0, 0.0]
    assert scores_from_losses(after, before, after_f, before).tolist() == [1.0, 2.0]


def test_errors(tiny) -> None:
    model, images, text = tiny
    with pytest.raises(InputError, match="timestep grid size"):
        timestep_grid(0, 1000)
    with pytest.raises(InputError, match="disagree"):
        grid_losses(model, images[:2], text[:2], torch.zeros(3, 2, 3, 8, 8), timestep_grid(2, 1000))
