"""mAP(L) as DESIGN §4 defines it: teacher top-L as positives, AP over a full ranking of the training set."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError

__all__ = ["PAPER_FRACTIONS", "cutoffs", "rank_positions", "average_precision", "ap_at_cutoffs", "map_at",
           "mean_se"]

# The paper's L values over MSCOCO's 118,287 training images: 500, 1000 and 4000.
PAPER_FRACTIONS: tuple[float, ...] = (500 / 118_287, 1000 / 118_287, 4000 / 118_287)


def cutoffs(n_items: int, fractions: Sequence[float] = PAPER_FRACTIONS) -> list[int]:
    """L for each fraction of the training set: rounded, at least 1, at most N.

    Example:
        >>> cutoffs(4096)
        [17, 35, 139]
    """
    if n_items < 1:
        raise InputError(f"mAP needs a non-empty training set, got n_items={n_items}.")
    return [min(n_items, max(1, int(round(f * n_items)))) for f in fractions]


def rank_positions(scores: np.ndarray) -> np.ndarray:
    """1-based position of every item when all are ranked by ``scores`` (higher first, ties by index).

    Example:
        >>> rank_positions(np.array([0.2, 0.9, 0.2])).tolist()
        [2, 1, 3]
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(1, len(order) + 1)
    return position


def _ap_of_positions(positions: np.ndarray) -> float:
    """AP from the (1-based) positions of the positives: mean of (positives so far) / position."""
    pos = np.sort(positions)
    return float(np.mean(np.arange(1, len(pos) + 1) / pos))


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of ranking all items by ``scores`` (higher first) against the set ``positives``.

    AP = mean over the positives of (positives at or above it) / (its 1-based position).
    Ties are broken by item index, so a constant score ranks items in index order.

    Example:
        >>> average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 2]))  # (1/1 + 2/3) / 2
        0.8333333333333333
    """
    scores = np.asarray(scores)
    positives = np.unique(np.asarray(positives, np.int64))
    if len(positives) == 0:
        raise InputError("average_precision needs at least one positive item.")
    if positives.min() < 0 or positives.max() >= len(scores):
        raise InputError(f"positives must index the {len(scores)} scored items.")
    return _ap_of_positions(rank_positions(scores)[positives])


def ap_at_cutoffs(scores: np.ndarray, teacher_order: np.ndarray, cuts: Sequence[int]) -> list[float]:
    """AP at each L in ``cuts`` for one query (positives: ``teacher_order[:L]``), from one sort of
    the method's scores over all N items; each value equals ``average_precision(scores, teacher_order[:L])``.

    Example:
        >>> ap_at_cutoffs(np.array([3., 2., 1.]), np.array([1, 0, 2]), [1, 2])  # [1/2, (1/1 + 2/2)/2]
        [0.5, 1.0]
    """
    position = rank_positions(scores)
    return [_ap_of_positions(position[np.asarray(teacher_order)[:cut]]) for cut in cuts]


def map_at(scores: np.ndarray, teacher_orders: np.ndarray, cutoff: int) -> np.ndarray:
    """Per-query AP at cutoff L: ``scores`` (Q, N) from the method, ``teacher_orders`` (Q, N) item rows.

    Example:
        >>> map_at(np.array([[3., 2., 1.]]), np.array([[1, 0, 2]]), 1).tolist()  # positive 1 at position 2
        [0.5]
    """
    scores, teacher_orders = np.asarray(scores), np.asarray(teacher_orders)
    if scores.shape != teacher_orders.shape:
        raise InputError(f"scores {scores.shape} and teacher orders {teacher_orders.shape} must match.")
    if not 1 <= cutoff <= scores.shape[1]:
        raise InputError(f"cutoff L={cutoff} must lie in 1..{scores.shape[1]}.")
    return np.asarray([average_precision(s, t[:cutoff]) for s, t in zip(scores, teacher_orders)])


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n); 0 for a single value).

    Example:
        >>> [round(v, 6) for v in mean_se(np.array([0.2, 0.4]))]
        [0.3, 0.1]
    """
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        raise InputError("mean_se needs at least one value.")
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), se
