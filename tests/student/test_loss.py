"""Labels, negative sampling and the two losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastattr.student.loss import PairSampler, rank_labels, ranking_loss, regression_loss


def test_labels_most_influential_is_one():
    y = rank_labels(np.array([2, 0, 1, 0]), np.array([0, 0, 0, 1]))
    # Query 0 has M = 3: rank 0 -> 1, rank 1 -> 2/3, rank 2 -> 1/3; query 1 has M = 1.
    np.testing.assert_allclose(y, [1 / 3, 1.0, 2 / 3, 1.0], rtol=1e-6)


def test_negatives_are_never_candidates_and_have_label_zero():
    n_items = 50
    q = np.repeat(np.arange(4), 40)
    items = np.concatenate([np.random.default_rng(k).choice(n_items, 40, replace=False) for k in range(4)])
    ranks = np.tile(np.arange(40), 4)
    sampler = PairSampler(q, items, ranks, np.zeros(len(q)), n_items=n_items, p_negative=0.5, seed=1)
    n_neg = 0
    for bq, bi, by, _ in sampler.epoch(batch_size=64):
        candidate = {(a, b) for a, b in zip(q, items)}
        is_cand = np.asarray([(a, b) in candidate for a, b in zip(bq, bi)])
        assert np.all(by[~is_cand] == 0.0)
        assert np.all(by[is_cand] > 0.0)
        n_neg += int((~is_cand).sum())
    assert 40 <= n_neg <= 120  # about half of 160 pairs


def test_epoch_covers_every_pair_once_without_negatives():
    sampler = PairSampler(np.zeros(10, np.int64), np.arange(10), np.arange(10), np.arange(10.0), n_items=20,
                          p_negative=0.0)
    seen = np.concatenate([b[1] for b in sampler.epoch(batch_size=3)])
    assert sorted(seen.tolist()) == list(range(10))


def test_losses():
    logits = torch.tensor([2.0, -1.0])
    labels = torch.tensor([1.0, 0.25])
    expected = -(labels * torch.log(torch.sigmoid(logits)) + (1 - labels) * torch.log(1 - torch.sigmoid(logits)))
    assert float(ranking_loss(logits, labels)) == pytest.approx(float(expected.mean()), rel=1e-6)
    assert float(regression_loss(logits, labels)) == pytest.approx(((2 - 1) ** 2 + (-1.25) ** 2) / 2)
