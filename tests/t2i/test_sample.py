"""Tests for t2i/sample.py: DDIM sampling shapes, seeding and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from fastattr.errors import InputError
from fastattr.t2i import T2IConfig, T2IModel, sample_images
from fastattr.t2i.sample import ddim_timesteps


def test_timesteps() -> None:
    assert ddim_timesteps(1000, 1) == [999]
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    assert ddim_timesteps(1000, 3, start=900) == [900, 450, 0]
    with pytest.raises(InputError, match="steps must be >= 1"):
        ddim_timesteps(1000, 0)
    with pytest.raises(InputError, match="start must be in"):
        ddim_timesteps(1000, 3, start=1000)


def test_sample_is_seeded_uint8() -> None:
    model = T2IModel.create(T2IConfig.preset("tiny"))
    prompts = ["a large red circle in the center on a grey background", "a medium blue square"]
    a = model.sample(prompts, seed=3, steps=3, guidance_scale=2.0)
    b = sample_images(model, prompts, seed=3, steps=3, guidance_scale=2.0, batch_size=1)
    c = model.sample(prompts, seed=4, steps=3, guidance_scale=2.0)
    assert a.shape == (2, 8, 8, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    unguided = model.sample(prompts, seed=3, steps=3, guidance_scale=1.0)
    assert unguided.shape == a.shape
    options = model.sample(prompts, seed=3, steps=3, guidance_scale=2.0, guidance_rescale=0.7,
                           start_timestep=900)
    assert options.shape == a.shape and not np.array_equal(options, a)
    assert model.unet.training  # a fresh model stays in train mode after sampling
    with pytest.raises(InputError, match="at least one caption"):
        model.sample([], seed=0)
