"""Tests of fastattr.teacher.curate: contract output, determinism, resumability, parallel workers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastattr.errors import CheckpointError, InputError  # noqa: E402
from fastattr.teacher.curate import CurationConfig, ItemInputs, QueryInputs, curate  # noqa: E402
from fastattr.teacher.fisher import fit_fisher  # noqa: E402
from fastattr.teacher.teacher_set import load_teacher_set  # noqa: E402
from fastattr.teacher.worker import result_path  # noqa: E402

class _Run:
    """curate() over fixed tiny inputs; keyword arguments override the config or curate's own."""

    def __init__(self, model, items, queries, fisher, config):
        self.model, self.items, self.queries, self.fisher, self.config = model, items, queries, fisher, config

    def __call__(self, out, *, config=None, queries=None, **kwargs):
        config = config or self.config
        return curate(out, self.model, self.items, queries or self.queries, method=config.method(self.fisher),
                      config=config, progress=False, **kwargs)


@pytest.fixture(scope="module")
def setup(tiny):
    from fastattr.models.diffusers_model import images_to_unit

    model, x, text = tiny
    item_images = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    item_x = images_to_unit(item_images)
    fisher = fit_fisher(model, item_x, text, progress=False)
    # Queries: near copies of items 0, 5, 7 (train) and 3 (test), with their text states.
    rows = [0, 5, 7, 3]
    q_images = np.clip(item_images[rows].astype(int) + 2, 0, 255).astype(np.uint8)
    items = ItemInputs(x=item_x.numpy(), text_states=text.numpy(), ids=np.arange(12))
    queries = QueryInputs(captions=[f"q{r}" for r in rows], images=q_images,
                          x=model.to_model_space(q_images).numpy(), text_states=text[rows].numpy(),
                          splits=["train", "train", "train", "test"])
    config = CurationConfig(candidates_k=8, subsample_m=6, n_timesteps=4, query_draws=16, eta=0.01,
                            batch_size=64, n_train_queries=3, n_test_queries=1)
    return _Run(model, items, queries, fisher, config), config, rows


def test_contract_and_determinism(setup, tmp_path) -> None:
    run, config, rows = setup
    a = load_teacher_set(run(tmp_path / "a"))
    b = load_teacher_set(run(tmp_path / "b"))
    assert a.meta["format"] == "fastattr-teacher-set" and a.meta["n_items"] == 12
    assert a.meta["candidates_k"] == 8 and a.meta["subsample_m"] == 6 and len(a.meta["timesteps"]) == 4
    assert a.splits == ["train", "train", "train", "test"]
    assert a.query_id.dtype == np.int64 and a.item_id.dtype == np.int64
    assert a.rank.dtype == np.int32 and a.score.dtype == np.float32
    for q in range(4):
        sel = a.query_id == q
        m_q = 12 if q == 3 else 6
        assert sorted(a.rank[sel].tolist()) == list(range(m_q))
        assert len(set(a.item_id[sel].tolist())) == m_q
        # rank 0 has the largest τ
        assert a.score[sel][a.rank[sel] == 0][0] == a.score[sel].max()
    # The test query (a near copy of item 3) is ranked over the whole set and finds item 3 first.
    sel = a.query_id == 3
    assert a.item_id[sel][a.rank[sel] == 0][0] == rows[3]
    for field in ("query_id", "item_id", "rank", "score"):
        assert np.array_equal(getattr(a, field), getattr(b, field))


def test_item_noise_is_regenerated_not_stored(setup, tmp_path) -> None:
    # A stored (items × timesteps × latent) noise array would be hundreds of GB at 1e6 items; each
    # item's noise is a function of (seed, id, t), so the scorer draws it again for its candidates.
    run, config, _ = setup
    run(tmp_path / "n")
    work = tmp_path / "n" / "work"
    assert not (work / "item_noise.npy").exists()
    assert np.load(work / "item_ids.npy").tolist() == list(range(12))
    largest = max(f.stat().st_size for f in work.rglob("*.npy"))
    assert largest <= (work / "item_x.npy").stat().st_size + 1024


def test_resume_skips_finished_queries(setup, tmp_path) -> None:
    run, config, _ = setup
    first = load_teacher_set(run(tmp_path / "r"))
    work = tmp_path / "r" / "work"
    # Simulate a crash after queries 0 and 1: drop the later results, and mark query 0's file so
    # that a recomputation would be visible.
    result_path(work, 2).unlink()
    result_path(work, 3).unlink()
    with np.load(result_path(work, 0)) as r:
        rows = r["item_rows"]
    np.savez(result_path(work, 0), item_rows=rows, score=np.arange(len(rows), dtype=np.float32))
    again = load_teacher_set(run(tmp_path / "r"))
    assert again.meta["resumed_queries"] == 2
    sel = again.query_id == 0
    assert np.array_equal(again.score[sel], np.arange(len(rows), dtype=np.float32))  # not recomputed
    for q in (1, 2, 3):  # recomputed queries equal the first run
        s1, s2 = first.query_id == q, again.query_id == q
        assert np.array_equal(first.item_id[s1], again.item_id[s2])
        assert np.array_equal(first.score[s1], again.score[s2])


def test_parallel_workers_match_serial(setup, tmp_path) -> None:
    run, config, _ = setup
    serial = load_teacher_set(run(tmp_path / "s"))
    parallel = load_teacher_set(run(tmp_path / "p", workers=2))
    assert np.array_equal(serial.item_id, parallel.item_id)
    np.testing.assert_allclose(serial.score, parallel.score, rtol=1e-4, atol=1e-6)


def test_errors(setup, tmp_path) -> None:
    run, config, _ = setup
    run(tmp_path / "e")
    other = CurationConfig(**{**config.__dict__, "seed": 1})
    with pytest.raises(CheckpointError, match="other inputs or settings"):
        run(tmp_path / "e", config=other)
    run(tmp_path / "e", config=other, overwrite=True)  # explicit restart works
    # A new η keeps the prepared inputs (losses before unlearning), only the results are redone.
    base = tmp_path / "e" / "work" / "base_losses.npy"
    stamp = base.stat().st_mtime_ns
    run(tmp_path / "e", config=CurationConfig(**{**other.__dict__, "eta": 0.02}), overwrite=True)
    assert base.stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="candidates_k"):
        run(tmp_path / "x", config=CurationConfig(candidates_k=99))
    with pytest.raises(InputError, match="fisher_kind"):
        run(tmp_path / "x", config=CurationConfig(fisher_kind="kfac", candidates_k=4))
    import dataclasses

    with pytest.raises(InputError, match="splits"):
        run(tmp_path / "x", queries=dataclasses.replace(run.queries, splits=["train", "valid", "train", "test"]))
    with pytest.raises(InputError, match="one of each per query"):
        run(tmp_path / "x", queries=dataclasses.replace(run.queries, images=run.queries.images[:2]))
    with pytest.raises(InputError, match="workers"):
        run(tmp_path / "x", workers=0)
    with pytest.raises(CheckpointError, match="no teacher_set.json"):
        load_teacher_set(tmp_path / "x")


class _StubModel:
    path = None

    def digest(self) -> str:
        return "model-digest"


class _StubMethod:
    def __init__(self, **settings):
        self._settings = settings

    def prepare_settings(self) -> dict:
        return {"n_timesteps": self._settings.get("n_timesteps", 4)}

    def settings(self) -> dict:
        return dict(self._settings)


def test_fingerprint_step_separates_prepared_inputs_from_run_settings() -> None:
    from fastattr.teacher.curate import _fingerprints

    items = ItemInputs(x=np.zeros((3, 1, 2, 2), np.float32), text_states=np.zeros((3, 2, 4), np.float32),
                       ids=np.arange(3))
    queries = QueryInputs(captions=["a"], images=np.zeros((1, 2, 2, 3), np.uint8),
                          x=np.zeros((1, 1, 2, 2), np.float32), text_states=np.zeros((1, 2, 4), np.float32),
                          splits=["test"])
    config = CurationConfig(candidates_k=2)
    prep, run = _fingerprints(_StubModel(), items, queries, _StubMethod(eta=0.01), config)
    assert (prep, run) == _fingerprints(_StubModel(), items, queries, _StubMethod(eta=0.01), config)
    # Another η: the same prepared inputs, another run.
    prep2, run2 = _fingerprints(_StubModel(), items, queries, _StubMethod(eta=0.02), config)
    assert prep2 == prep and run2 != run
    # Other candidates, items or query captions: both change.
    for args in ((items, queries, CurationConfig(candidates_k=3)),
                 (ItemInputs(x=items.x, text_states=items.text_states, ids=np.arange(1, 4)), queries, config),
                 (items, QueryInputs(**{**queries.__dict__, "captions": ["b"]}), config)):
        other_prep, other_run = _fingerprints(_StubModel(), args[0], args[1], _StubMethod(eta=0.01), args[2])
        assert other_prep != prep and other_run != run


def test_open_work_step_refuses_another_run_unless_overwrite(tmp_path) -> None:
    import json

    from fastattr.teacher.curate import _open_work

    work = tmp_path / "work"
    _open_work(work, {"fingerprint": "a", "note": 1}, overwrite=False)
    (work / "results").mkdir()
    (work / "results" / "q000000.npz").write_bytes(b"x")
    (work / "cache.npy").write_bytes(b"keep")
    _open_work(work, {"fingerprint": "a", "note": 2}, overwrite=False)    # the same run resumes
    assert (work / "results" / "q000000.npz").is_file()
    assert json.loads((work / "run.json").read_text())["note"] == 2
    with pytest.raises(CheckpointError, match="other inputs or settings"):
        _open_work(work, {"fingerprint": "b"}, overwrite=False)
    assert json.loads((work / "run.json").read_text())["fingerprint"] == "a"
    _open_work(work, {"fingerprint": "b"}, overwrite=True)
    assert not (work / "results").exists() and (work / "cache.npy").read_bytes() == b"keep"
    assert json.loads((work / "run.json").read_text())["fingerprint"] == "b"
