"""mAP(L): hand-computed examples, cutoffs at the paper's fractions, standard error, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fastattr.errors import InputError
from fastattr.student.metrics import PAPER_FRACTIONS, average_precision, cutoffs, map_at, mean_se


def test_average_precision_hand_computed():
    # Ranking by score: items 3, 0, 4, 1, 2. Positives {0, 1}: found at positions 2 and 4.
    # AP = (1/2 + 2/4) / 2 = 0.5.
    scores = np.array([0.8, 0.3, 0.1, 0.9, 0.5])
    assert average_precision(scores, np.array([0, 1])) == pytest.approx(0.5)
    # Positives {3, 4, 1}: positions 1, 3, 4 -> (1/1 + 2/3 + 3/4) / 3.
    assert average_precision(scores, np.array([3, 4, 1])) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)


def test_perfect_and_worst_rankings():
    scores = np.arange(10, 0, -1, dtype=float)
    assert average_precision(scores, np.arange(3)) == pytest.approx(1.0)
    # The single positive ranked last of 10: AP = 1/10.
    assert average_precision(scores, np.array([9])) == pytest.approx(0.1)


def test_map_at_uses_teacher_top_l():
    scores = np.array([[0.9, 0.1, 0.5, 0.7], [0.1, 0.2, 0.3, 0.4]])
    teacher = np.array([[3, 0, 1, 2], [0, 1, 2, 3]])
    # Query 0: positives {3, 0} at student positions 2, 1 -> AP 1. Query 1: {0, 1} at 4, 3 -> (1/3 + 2/4)/2.
    np.testing.assert_allclose(map_at(scores, teacher, 2), [1.0, (1 / 3 + 2 / 4) / 2])


def test_cutoffs_follow_paper_fractions():
    assert cutoffs(118_287) == [500, 1000, 4000]
    assert cutoffs(2500) == [11, 21, 85]
    assert cutoffs(10) == [1, 1, 1]
    assert len(PAPER_FRACTIONS) == 3


def test_mean_se():
    mean, se = mean_se(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == pytest.approx(2.5)
    assert se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert mean_se(np.array([0.7])) == (pytest.approx(0.7), 0.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: average_precision(np.zeros(3), np.array([], np.int64)), "at least one positive"),
        (lambda: average_precision(np.zeros(3), np.array([5])), "must index"),
        (lambda: map_at(np.zeros((1, 3)), np.zeros((2, 3), np.int64), 1), "must match"),
        (lambda: map_at(np.zeros((1, 3)), np.zeros((1, 3), np.int64), 4), "cutoff"),
        (lambda: cutoffs(0), "non-empty"),
        (lambda: mean_se(np.array([])), "at least one"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(InputError, match=message):
        call()
