"""Tests of fastattr.teacher.features: retrieval feature, top-K, subsample."""

from __future__ import annotations

import numpy as np
import pytest

from fastattr.errors import InputError
from fastattr.teacher.features import retrieval_features, retrieval_means, subsample, top_k_candidates


def test_feature_cosine_is_mean_of_image_and_text_cosines() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, 3, 4, 4)).astype(np.float32)
    text = rng.normal(size=(6, 5, 7)).astype(np.float32)
    f = retrieval_features(images, text, input_mean=np.zeros(48), text_mean=np.zeros(7))
    pix = images.reshape(6, -1)
    txt = text.mean(1)
    cos = lambda u, v: u @ v / np.linalg.norm(u) / np.linalg.norm(v)  # noqa: E731
    expected = 0.5 * (cos(pix[0], pix[3]) + cos(txt[0], txt[3]))
    assert f[0] @ f[3] == pytest.approx(expected, rel=1e-5)
    assert np.allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)


def test_means_are_in_the_feature_layout() -> None:
    # Two items whose channels are swapped: centred on their true mean, their input parts are exact
    # opposites. A mean taken in another layout (e.g. channels last) breaks that.
    a = np.zeros((1, 3, 2, 3), np.float32)
    a[:, 0], a[:, 1] = 0.6, -0.7
    images = np.concatenate([a, a[:, ::-1]])
    text = np.zeros((2, 1, 4), np.float32)
    text[0, 0, 0], text[1, 0, 1] = 1.0, 1.0
    pixel_mean, text_mean = retrieval_means(images, text)
    f = retrieval_features(images, text, input_mean=pixel_mean, text_mean=text_mean)
    n_pix = images[0].size
    assert np.allclose(f[0, :n_pix], -f[1, :n_pix], atol=1e-6)
    assert np.allclose(text_mean, [0.5, 0.5, 0, 0])


def test_top_k_and_subsample() -> None:
    items = np.eye(5, dtype=np.float32)
    queries = np.array([[0, 0, 1, 0.5, 0]], dtype=np.float32)
    assert top_k_candidates(queries, items, 2).tolist() == [[2, 3]]
    assert top_k_candidates(np.zeros((1, 5), np.float32), items, 3).tolist() == [[0, 1, 2]]  # ties: lower row
    pick = subsample(np.arange(100), 10, np.random.default_rng(0))
    assert len(set(pick.tolist())) == 10 and np.all(np.diff(pick) > 0)
    assert subsample(np.array([5, 1]), None, np.random.default_rng(0)).tolist() == [1, 5]


def test_errors() -> None:
    with pytest.raises(InputError, match="candidates_k"):
        top_k_candidates(np.zeros((1, 2), np.float32), np.zeros((3, 2), np.float32), 4)
    with pytest.raises(InputError, match="subsample_m"):
        subsample(np.arange(5), 0, np.random.default_rng(0))
    with pytest.raises(InputError, match="same n"):
        retrieval_features(np.zeros((2, 3, 2, 2)), np.zeros((3, 1, 2)), input_mean=0, text_mean=0)
