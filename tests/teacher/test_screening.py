"""Tests of the teacher's screening of whole-set queries: the top comes out as the full computation's."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastattr.teacher.curate import CurationConfig, ItemInputs, QueryInputs, curate  # noqa: E402
from fastattr.teacher.fisher import fit_fisher  # noqa: E402
from fastattr.teacher.method import screened_scores  # noqa: E402
from fastattr.teacher.scoring import scores_from_losses  # noqa: E402
from fastattr.teacher.teacher_set import load_teacher_set  # noqa: E402
from fastattr.teacher.worker import result_path  # noqa: E402


def _grid(n: int, n_t: int, seed: int, noise: float = 1.5e-4) -> tuple[np.ndarray, np.ndarray]:
    """(after, base) losses shaped like a real query's: a per-item effect seen through
    timestep-dependent noise larger than most effects, and a few strong items whose columns
    spread wider still, as a near copy's do."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.05, 0.4, size=(n, n_t)).astype(np.float32)
    effect = rng.standard_normal(n) * 1e-4
    spread = np.full(n, noise)
    strong = rng.choice(n, 10, replace=False)
    effect[strong] += rng.uniform(1e-3, 3e-3, size=len(strong))
    spread[strong] = 1.5 * effect[strong]
    after = base + effect[:, None] + rng.standard_normal((n, n_t)) * spread[:, None]
    return after.astype(np.float32), base


# A margin shared by all items (not scaled by each one's columns) missed a strong item on seed 2 at both noises.
@pytest.mark.parametrize("noise, max_cost", [(1.5e-4, 0.75), (3e-4, 1.0)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_screened_scores_are_exact_where_they_can_reach_the_top(seed: int, noise: float, max_cost: float) -> None:
    n, n_t, top = 2000, 16, 40
    after, base = _grid(n, n_t, seed, noise)
    computed = np.zeros((n, n_t), dtype=int)

    def after_losses(sel: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        computed[np.ix_(sel, cols)] += 1
        return torch.from_numpy(after[np.ix_(sel, cols)])

    tau, exact = screened_scores(after_losses, base, exact_top=top)
    full = scores_from_losses(torch.from_numpy(after), torch.from_numpy(base)).numpy()
    assert tau.dtype == np.float32 and exact.dtype == bool and tau.shape == exact.shape == (n,)
    assert np.array_equal(tau[exact], full[exact])  # bit for bit
    order = np.argsort(-tau, kind="stable")
    assert exact[order[:top]].all()
    assert set(order[:top].tolist()) == set(np.argsort(-full, kind="stable")[:top].tolist())
    assert computed.max() == 1  # no (item, timestep) loss is computed twice
    assert computed[exact].all() and not computed[~exact].all(axis=1).any()
    assert computed.sum() < max_cost * n * n_t  # the point of it


def test_screened_scores_with_no_room_computes_everything() -> None:
    after, base = _grid(100, 16, 0)  # 16 columns: the screening path, not the short-grid one
    tau, exact = screened_scores(lambda s, c: torch.from_numpy(after[np.ix_(s, c)]), base, exact_top=60)
    assert exact.all()
    full = scores_from_losses(torch.from_numpy(after), torch.from_numpy(base)).numpy()
    assert np.array_equal(tau, full)


@pytest.fixture(scope="module")
def whole_set_run(pipeline_folders):
    """curate() over 256 random items with two test queries (near copies of items 4 and 50)."""
    from fastattr.models import load_diffusion_model
    from fastattr.models.diffusers_model import images_to_unit

    torch.set_num_threads(1)
    model = load_diffusion_model(pipeline_folders["pixel"])
    rng = np.random.default_rng(3)
    n = 256
    images = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    text = torch.randn((n, 3, 32), generator=torch.Generator().manual_seed(3))
    x = images_to_unit(images)
    fisher = fit_fisher(model, x, text, progress=False)
    rows = [4, 50]
    q_images = np.clip(images[rows].astype(int) + 2, 0, 255).astype(np.uint8)
    items = ItemInputs(x=x.numpy(), text_states=text.numpy(), ids=np.arange(n))
    queries = QueryInputs(captions=[f"q{r}" for r in rows], images=q_images,
                          x=model.to_model_space(q_images).numpy(), text_states=text[rows].numpy(),
                          splits=["test", "test"])

    def run(out, **settings):
        config = CurationConfig(candidates_k=8, subsample_m=None, n_timesteps=16, query_draws=8, batch_size=64,
                                n_train_queries=0, n_test_queries=2, **settings)
        return load_teacher_set(curate(out, model, items, queries, method=config.method(fisher), config=config,
                                       progress=False))

    return run, rows


def test_curation_screens_test_queries_and_keeps_their_top(whole_set_run, tmp_path) -> None:
    run, rows = whole_set_run
    top = 3  # 256 items ≥ 8 × 3, so screening applies
    screened = run(tmp_path / "s", screen=True, exact_top=top)
    full = run(tmp_path / "f")
    assert "screened_queries" in screened.meta and full.meta["screened_queries"] == {}
    for q in (0, 1):
        with np.load(result_path(tmp_path / "s" / "work", q)) as r:
            exact, scores, item_rows = r["exact"], r["score"], r["item_rows"]
            assert int(r["exact_top"]) == top
        assert screened.meta["screened_queries"][str(q)] == {"exact_top": top, "exact_items": int(exact.sum())}
        assert top <= exact.sum() < len(exact)
        assert np.array_equal(screened.full_ranking(q)[:top], full.full_ranking(q)[:top])
        with np.load(result_path(tmp_path / "f" / "work", q)) as r:
            assert "exact" not in r.files
            assert np.array_equal(r["item_rows"], item_rows)
            assert np.array_equal(r["score"][exact], scores[exact])  # bit for bit


def test_default_exact_top_is_the_largest_map_cutoff(whole_set_run, tmp_path) -> None:
    from fastattr.student.metrics import cutoffs

    run, _ = whole_set_run
    ts = run(tmp_path / "d", screen=True)
    assert {v["exact_top"] for v in ts.meta["screened_queries"].values()} == {max(cutoffs(256))}


def test_exact_top_must_be_positive() -> None:
    from fastattr.errors import InputError

    with pytest.raises(InputError, match="exact_top"):
        CurationConfig(exact_top=0).check(1000)
