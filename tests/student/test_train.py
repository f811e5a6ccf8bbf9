"""Training the head: a step lowers the loss, labels point the right way, validation and config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastattr.errors import CheckpointError, InputError
from fastattr.student.head import Head, join_features
from fastattr.student.loss import rank_labels, ranking_loss
from fastattr.student.train import Features, TrainConfig, embed_features, split_queries, train_head


def toy_teacher(n_items: int = 60, n_queries: int = 12, m: int = 20, seed: int = 0):
    """Queries are noisy copies of a source item; the teacher ranks items by distance to that source."""
    rng = np.random.default_rng(seed)
    item_img, item_txt = rng.standard_normal((n_items, 8)), rng.standard_normal((n_items, 6))
    sources = rng.choice(n_items, n_queries, replace=False)
    q_img = item_img[sources] + 0.05 * rng.standard_normal((n_queries, 8))
    q_txt = item_txt[sources] + 0.05 * rng.standard_normal((n_queries, 6))
    joined = np.concatenate([item_img / np.linalg.norm(item_img, axis=1, keepdims=True),
                             item_txt / np.linalg.norm(item_txt, axis=1, keepdims=True)], axis=1)
    qid, iid, rank, score = [], [], [], []
    for q, src in enumerate(sources):
        dist = np.linalg.norm(joined - joined[src], axis=1)
        order = np.argsort(dist, kind="stable")[:m]  # order[0] is the source itself
        qid += [q] * m
        iid += order.tolist()
        rank += list(range(m))
        score += (-dist[order]).tolist()
    feats = Features(q_img.astype(np.float32), q_txt.astype(np.float32), item_img.astype(np.float32),
                     item_txt.astype(np.float32))
    return feats, np.asarray(qid), np.asarray(iid), np.asarray(rank), np.asarray(score, np.float32), sources


def test_one_step_lowers_the_loss():
    feats, qid, iid, rank, _, _ = toy_teacher()
    fq, fx = feats.joined()
    head = Head(fq.shape[1], hidden=32, dim=16, dropout=0.0)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)
    y = torch.from_numpy(rank_labels(rank, qid))

    def loss() -> torch.Tensor:
        return ranking_loss(head.logits(head(fq[qid]), head(fx[iid])), y)

    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    assert float(loss().detach()) < float(before.detach())


def test_most_influential_gets_the_highest_cosine_after_training():
    feats, qid, iid, rank, score, sources = toy_teacher()
    config = TrainConfig(hidden=64, dim=32, steps=300, batch_size=128, val_fraction=0.0, p_negative=0.1)
    head, log = train_head(feats, qid, iid, rank, score, np.arange(len(sources)), n_items=60, config=config,
                           progress=False)
    assert log["last_train_loss"] < log["first_train_loss"]
    fq, fx = feats.joined()
    cos = embed_features(head, fq) @ embed_features(head, fx).T
    for q in range(len(sources)):
        cands = iid[qid == q]
        top = cands[np.argmax(cos[q, cands])]
        assert top == iid[(qid == q) & (rank == 0)][0]  # label 1 (rank 0) -> highest cosine
        # And the cosine falls with the teacher's rank on average (Spearman-like check on the candidates).
        r = rank[qid == q]
        assert np.corrcoef(cos[q, cands], -r)[0, 1] > 0.5


def test_regression_objective_trains_on_scores():
    feats, qid, iid, rank, score, sources = toy_teacher()
    config = TrainConfig(hidden=32, dim=16, steps=40, batch_size=128, objective="regression", eval_every=10)
    head, log = train_head(feats, qid, iid, rank, score, np.arange(len(sources)), n_items=60, config=config,
                           progress=False)
    assert log["n_val_queries"] == 1 and log["history"]
    # The image/text balance was chosen among the configured weights on the held-out query.
    assert log["image_weight"] in config.image_weights and len(log["image_weight_val_map"]) == 5
    assert log["chosen"]["step"] in [h["step"] for h in log["history"]]


def test_validation_queries_are_held_out():
    fit, val = split_queries(np.arange(20), 0.1, seed=3)
    assert len(val) == 2 and not set(fit) & set(val) and sorted([*fit, *val]) == list(range(20))
    assert len(split_queries(np.arange(1), 0.5, 0)[1]) == 0  # a single query is never held out


def test_errors():
    feats, qid, iid, rank, score, _ = toy_teacher()
    with pytest.raises(InputError, match="objective"):
        TrainConfig(objective="listwise")
    with pytest.raises(InputError, match="p_negative"):
        TrainConfig(p_negative=1.0)
    with pytest.raises(InputError, match="no training queries"):
        train_head(feats, qid, iid, rank, score, np.array([], np.int64), n_items=60, config=TrainConfig())
    with pytest.raises(CheckpointError, match="Item features have 60 rows"):
        train_head(feats, qid, iid, rank, score, np.arange(3), n_items=61, config=TrainConfig(steps=1))


def test_join_matches_features_joined():
    feats, *_ = toy_teacher()
    fq, _ = feats.joined()
    torch.testing.assert_close(fq, join_features(torch.from_numpy(feats.query_image), torch.from_numpy(feats.query_text)))
