"""The teacher against a slow, obvious reference on a latent (VAE) pipeline: for one query, curation's
scores equal a loop that applies the unlearning step parameter by parameter to a copy of the UNet and
recomputes every loss with diffusers' own scheduler."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastattr.teacher.curate import CurationConfig, ItemInputs, QueryInputs, curate  # noqa: E402
from fastattr.teacher.fisher import fit_fisher  # noqa: E402
from fastattr.teacher.method import query_seed  # noqa: E402
from fastattr.teacher.scoring import item_noise  # noqa: E402
from fastattr.teacher.teacher_set import load_teacher_set  # noqa: E402
from fastattr.teacher.unlearn import query_gradient, unlearning_delta  # noqa: E402


def _loss(unet, scheduler, x, c, t: int, noise, prediction_type: str) -> float:
    timesteps = torch.tensor([t])
    noisy = scheduler.add_noise(x[None], noise[None], timesteps)
    target = noise[None] if prediction_type == "epsilon" else scheduler.get_velocity(x[None], noise[None], timesteps)
    with torch.no_grad():
        pred = unet(noisy, timesteps, encoder_hidden_states=c[None]).sample
    return float(((pred - target) ** 2).mean())


@pytest.mark.parametrize("name", ["latent-epsilon", "latent-v"])
def test_scores_equal_a_brute_force_loop(pipeline_folders, tmp_path, name: str) -> None:
    from diffusers import DDPMScheduler

    from fastattr.models import load_diffusion_model

    model = load_diffusion_model(pipeline_folders[name])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    x = model.to_model_space(images)
    c = model.encode_prompts([f"item {i}" for i in range(6)])
    ids = np.array([11, 3, 7, 20, 5, 8])
    fisher = fit_fisher(model, x, c, progress=False)
    config = CurationConfig(n_train_queries=0, n_test_queries=1, candidates_k=6, subsample_m=None,
                            n_timesteps=3, query_draws=4, eta=0.05, bf16=False, seed=2)
    q_image = rng.integers(0, 255, (1, 16, 16, 3), dtype=np.uint8)
    qx, qc = model.to_model_space(q_image), model.encode_prompts(["the query"])
    teacher = load_teacher_set(curate(
        tmp_path / "t", model, ItemInputs(x=x.numpy(), text_states=c.numpy(), ids=ids),
        QueryInputs(captions=["the query"], images=q_image, x=qx.numpy(), text_states=qc.numpy(), splits=["test"]),
        method=config.method(fisher), config=config, progress=False))
    got = dict(zip(teacher.item_id.tolist(), teacher.score.tolist()))

    # The reference: θ₋ on a deep copy, parameter by parameter; losses from diffusers' scheduler.
    delta = unlearning_delta(fisher, query_gradient(model, qx[0], qc[0], n_draws=4, seed=query_seed(2, 0)),
                             eta=0.05, n_train=6)
    unlearned = copy.deepcopy(model.unet)
    with torch.no_grad():
        for param_name, param in unlearned.named_parameters():
            layer = param_name.removesuffix(".weight")
            if param_name.endswith(".weight") and layer in delta:
                param += delta[layer]
    scheduler = DDPMScheduler.from_config(model.pipeline.scheduler.config)
    grid = [int((k + 0.5) * scheduler.config.num_train_timesteps / 3) for k in range(3)]
    for row, item in enumerate(ids):
        noise = item_noise([item], grid, tuple(x.shape[1:]), seed=2)[0]
        before = np.mean([_loss(model.unet, scheduler, x[row], c[row], t, noise[j], model.prediction_type)
                          for j, t in enumerate(grid)])
        after = np.mean([_loss(unlearned, scheduler, x[row], c[row], t, noise[j], model.prediction_type)
                         for j, t in enumerate(grid)])
        assert got[row] == pytest.approx(after - before, abs=1e-5), (name, row)
    assert len(got) == 6 and max(abs(v) for v in got.values()) > 1e-5   # the step changed something
