"""The frozen retrieval feature that picks each query's candidates: centred model input ⊕ mean text state."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["FEATURE_DESCRIPTION", "retrieval_features", "top_k_candidates", "subsample"]

FEATURE_DESCRIPTION = (
    "cosine of [centred flattened model-space input (pixels or VAE latent, L2-normalized) ⊕ "
    "centred token-mean of the text states (L2-normalized)] / sqrt(2), i.e. the mean of the "
    "image and text cosines"
)

_CHUNK = 4096  # rows per step, so memory-mapped inputs are read a slice at a time


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def retrieval_features(
    inputs: np.ndarray,
    text_states: np.ndarray,
    *,
    input_mean: np.ndarray,
    text_mean: np.ndarray,
) -> np.ndarray:
    """Features whose inner products are the candidate-retrieval cosines: (n, C·h·w + D) float32.

    Args:
        inputs: (n, C, h, w) model-space inputs (``DiffusionModel.to_model_space``), possibly
            memory-mapped.
        text_states: (n, L, D) text states.
        input_mean, text_mean: the training set's mean flattened input and mean token-mean text
            state (:func:`retrieval_means`), subtracted so that the cosine compares deviations
            from the average item.

    Example:
        >>> f = retrieval_features(np.zeros((2, 3, 2, 2)), np.ones((2, 4, 5)),
        ...                        input_mean=np.zeros(12), text_mean=np.zeros(5))
        >>> f.shape
        (2, 17)
    """
    if inputs.ndim < 2 or text_states.ndim != 3 or len(inputs) != len(text_states):
        raise InputError(
            f"retrieval_features needs inputs (n, ...) and text states (n, L, D) for the same "
            f"n; got {inputs.shape} and {text_states.shape}"
        )
    n = len(inputs)
    width = int(np.prod(inputs.shape[1:]))
    out = np.empty((n, width + text_states.shape[2]), dtype=np.float32)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        x = np.asarray(inputs[lo:hi], dtype=np.float32).reshape(hi - lo, -1)
        txt = np.asarray(text_states[lo:hi], dtype=np.float32).mean(axis=1)
        out[lo:hi, :width] = _unit(x - input_mean)
        out[lo:hi, width:] = _unit(txt - text_mean)
    out /= np.float32(np.sqrt(2.0))
    return out


def retrieval_means(inputs: np.ndarray, text_states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training set's mean flattened input and mean token-mean text state (float64 sums).

    Example:
        >>> im, tm = retrieval_means(np.full((2, 3, 1, 1), -1.0), np.ones((2, 4, 5)))
        >>> im.tolist(), tm.shape
        ([-1.0, -1.0, -1.0], (5,))
    """
    n = len(inputs)
    x_sum = np.zeros(int(np.prod(inputs.shape[1:])), dtype=np.float64)
    t_sum = np.zeros(text_states.shape[2], dtype=np.float64)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        x_sum += np.asarray(inputs[lo:hi], dtype=np.float64).reshape(hi - lo, -1).sum(axis=0)
        t_sum += np.asarray(text_states[lo:hi], dtype=np.float64).mean(axis=1).sum(axis=0)
    return (x_sum / max(n, 1)).astype(np.float32), (t_sum / max(n, 1)).astype(np.float32)


def top_k_candidates(query_features: np.ndarray, item_features: np.ndarray, k: int) -> np.ndarray:
    """Row indices of each query's k most similar items, most similar first: (Q, k) int64.

    Ties are broken by the lower row index, so the result is deterministic.

    Example:
        >>> top_k_candidates(np.eye(2, dtype=np.float32), np.eye(3, 2, dtype=np.float32), 1).tolist()
        [[0], [1]]
    """
    n = item_features.shape[0]
    if not 1 <= k <= n:
        raise InputError(f"candidates_k = {k} must be in [1, {n}] (the training-set size)")
    sims = query_features @ item_features.T
    order = np.argsort(-sims, axis=1, kind="stable")
    return order[:, :k].astype(np.int64)


def subsample(candidates: np.ndarray, m: int | None, rng: np.random.Generator) -> np.ndarray:
    """A uniform random subset of m candidates (all of them when m is None), in ascending order.

    Example:
        >>> subsample(np.arange(10), 3, np.random.default_rng(0)).shape
        (3,)
    """
    if m is None or m >= len(candidates):
        return np.sort(candidates)
    if m < 1:
        raise InputError(f"subsample_m must be ≥ 1 or None, got {m}")
    return np.sort(rng.choice(candidates, size=m, replace=False))
