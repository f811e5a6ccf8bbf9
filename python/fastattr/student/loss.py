"""The learning-to-rank objective: labels from teacher ranks, sampled negatives, BCE on alpha*cos+beta."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._deps import require

torch = require("torch", feature="fastattr.student")
F = torch.nn.functional

__all__ = ["rank_labels", "PairSampler", "ranking_loss", "regression_loss"]


def rank_labels(rank: np.ndarray, query_id: np.ndarray) -> np.ndarray:
    """y = 1 - r / M_q per pair: the most influential item (r = 0) gets 1, the least 1/M_q.

    Example:
        >>> rank_labels(np.array([0, 1, 2, 3, 0, 1]), np.array([0, 0, 0, 0, 1, 1])).tolist()
        [1.0, 0.75, 0.5, 0.25, 1.0, 0.5]
    """
    counts = np.bincount(query_id)
    return (1.0 - rank / counts[query_id]).astype(np.float32)


class PairSampler:
    """Shuffled epochs of (query, item, label, score) pairs with random non-candidate negatives.

    DESIGN §3: with probability ``p_negative`` a pair's item is replaced by an item drawn
    uniformly from those that are not among that query's candidates, with label 0.

    Example:
        >>> s = PairSampler(np.array([0, 0]), np.array([3, 5]), np.array([0, 1]), np.zeros(2), n_items=10,
        ...                 p_negative=0.0)
        >>> q, i, y, tau = next(s.epoch(batch_size=2))
        >>> sorted(y.tolist())
        [0.5, 1.0]
    """

    def __init__(self, query_id: np.ndarray, item_id: np.ndarray, rank: np.ndarray, score: np.ndarray,
                 *, n_items: int, p_negative: float = 0.1, seed: int = 0) -> None:
        self.query_id = np.asarray(query_id, np.int64)
        self.item_id = np.asarray(item_id, np.int64)
        self.labels = rank_labels(np.asarray(rank), self.query_id)
        self.score = np.asarray(score, np.float32)
        self.n_items, self.p_negative = int(n_items), float(p_negative)
        self.rng = np.random.default_rng(seed)
        # Sorted (query, item) keys answer "is this item a candidate of that query?" by bisection.
        self._keys = np.sort(self.query_id * self.n_items + self.item_id)

    def __len__(self) -> int:
        return len(self.query_id)

    def _is_candidate(self, queries: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = queries * self.n_items + items
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, len(self._keys) - 1)
        return self._keys[pos] == keys

    def negatives(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One uniform non-candidate item per query, and whether one exists (a query may cover all items).

        Rejection sampling handles the usual case (few candidates among many items); the rare
        leftovers are drawn exactly from the complement of that query's candidates.
        """
        items = self.rng.integers(0, self.n_items, size=len(queries))
        ok = np.ones(len(queries), bool)
        for _ in range(8):
            clash = self._is_candidate(queries, items)
            if not clash.any():
                return items, ok
            items[clash] = self.rng.integers(0, self.n_items, size=int(clash.sum()))
        for j in np.flatnonzero(self._is_candidate(queries, items)):
            lo, hi = np.searchsorted(self._keys, [queries[j] * self.n_items, (queries[j] + 1) * self.n_items])
            free = np.setdiff1d(np.arange(self.n_items), self._keys[lo:hi] - queries[j] * self.n_items)
            if len(free):
                items[j] = self.rng.choice(free)
            else:
                ok[j] = False
        return items, ok

    def epoch(self, *, batch_size: int) -> Any:
        """Yield batches (query ids, item ids, labels, teacher scores) over one shuffled pass."""
        order = self.rng.permutation(len(self))
        for start in range(0, len(order), batch_size):
            sel = order[start:start + batch_size]
            q, i, y = self.query_id[sel], self.item_id[sel].copy(), self.labels[sel].copy()
            swap = np.flatnonzero(self.rng.random(len(sel)) < self.p_negative)
            if len(swap):
                drawn, ok = self.negatives(q[swap])
                i[swap[ok]] = drawn[ok]
                y[swap[ok]] = 0.0
            yield q, i, y, self.score[sel]


def ranking_loss(logits: Any, labels: Any) -> Any:
    """BCE-with-logits(alpha * cos(g(f_q), g(f_x)) + beta, y), averaged over the batch of pairs.

    ``logits`` come from :meth:`Head.logits`; ``labels`` are :func:`rank_labels` (0 for negatives).

    Example:
        >>> float(ranking_loss(torch.tensor([0.0]), torch.tensor([1.0])))  # log 2
        0.6931471824645996
    """
    return F.binary_cross_entropy_with_logits(logits, labels)


def regression_loss(predictions: Any, targets: Any) -> Any:
    """The ablation: mean squared error between alpha * cos + beta and the (rescaled) absolute teacher score.

    Example:
        >>> float(regression_loss(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0])))
        2.0
    """
    return F.mse_loss(predictions, targets)
