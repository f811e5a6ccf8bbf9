"""The frozen retrieval feature that picks each query's candidates: centred pixels ⊕ mean text state."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["FEATURE_DESCRIPTION", "retrieval_features", "top_k_candidates", "subsample"]

FEATURE_DESCRIPTION = (
    "cosine of [centred flattened pixels (L2-normalized) ⊕ centred token-mean of the frozen "
    "text states (L2-normalized)] / sqrt(2), i.e. the mean of the image and text cosines"
)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def retrieval_features(
    images: np.ndarray,
    text_states: np.ndarray,
    *,
    pixel_mean: np.ndarray,
    text_mean: np.ndarray,
) -> np.ndarray:
    """Features whose inner products are the candidate-retrieval cosines: (n, H·W·3 + D) float32.

    Args:
        images: uint8 (n, H, W, 3).
        text_states: (n, L, D) frozen text states.
        pixel_mean, text_mean: the training set's mean pixel vector and mean token-mean text state,
            subtracted so that the cosine compares deviations from the average item.

    Example:
        >>> f = retrieval_features(np.zeros((2, 2, 2, 3), np.uint8), np.ones((2, 4, 5)),
        ...                        pixel_mean=np.zeros(12), text_mean=np.zeros(5))
        >>> f.shape
        (2, 17)
    """
    if images.ndim != 4 or text_states.ndim != 3 or len(images) != len(text_states):
        raise InputError(
            f"retrieval_features needs images (n, H, W, 3) and text states (n, L, D) for the same "
            f"n; got {images.shape} and {text_states.shape}"
        )
    pix = images.reshape(len(images), -1).astype(np.float32) / 127.5 - 1.0
    txt = np.asarray(text_states, dtype=np.float32).mean(axis=1)
    feats = np.concatenate([_unit(pix - pixel_mean), _unit(txt - text_mean)], axis=1)
    return (feats / np.sqrt(2.0)).astype(np.float32)


def retrieval_means(images: np.ndarray, text_states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training set's mean pixel vector and mean token-mean text state, in the layout
    :func:`retrieval_features` flattens them (pixels in (H, W, 3) order, scaled to [-1, 1]).

    Example:
        >>> pm, tm = retrieval_means(np.zeros((2, 1, 1, 3), np.uint8), np.ones((2, 4, 5)))
        >>> pm.tolist(), tm.shape
        ([-1.0, -1.0, -1.0], (5,))
    """
    pix = np.asarray(images).reshape(len(images), -1).astype(np.float32) / 127.5 - 1.0
    return pix.mean(axis=0), np.asarray(text_states, dtype=np.float32).mean(axis=(0, 1))


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
