"""Cached frozen features: computed in batches, reused from the .npy cache, invalidated by a new encoder."""

from __future__ import annotations

import numpy as np
import torch

from fastattr.student.encoders import image_encoder_from_config, load_text_encoder, standin_vit_config
from fastattr.student.features import encoder_fingerprint, image_features, text_features
from fastattr.student.spec import preprocess_images, tokenize


def test_image_features_batched_and_cached(world, tmp_path):
    enc = image_encoder_from_config(standin_vit_config(16, hidden=32, layers=1))
    images = np.asarray(world.images[:40])
    feats = image_features(enc, images, batch_size=16, cache_dir=tmp_path, progress=False)
    with torch.no_grad():
        direct = enc(torch.from_numpy(preprocess_images(images, enc))).numpy()
    np.testing.assert_allclose(feats, direct, rtol=1e-5, atol=1e-6)
    cached = list(tmp_path.glob("image-*.npy"))
    assert len(cached) == 1
    # A second call reads the cache: poison the file and see the poison come back.
    np.save(cached[0], np.full_like(feats, 7.0))
    assert np.all(image_features(enc, images, cache_dir=tmp_path, progress=False) == 7.0)
    # Another encoder (other weights) gets another cache entry.
    other = image_encoder_from_config(standin_vit_config(16, hidden=32, layers=1), seed=1)
    assert encoder_fingerprint(other) != encoder_fingerprint(enc)
    image_features(other, images, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("image-*.npy"))) == 2


def test_text_features_equal_full_padding(world, text_encoder_dir, tmp_path):
    enc = load_text_encoder(text_encoder_dir, max_length=32)
    captions = world.captions[:10]
    feats = text_features(enc, captions, batch_size=4, cache_dir=tmp_path, progress=False)
    ids, mask = tokenize(captions, enc, tokenizer=enc.tokenizer)
    with torch.no_grad():
        full = enc(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(feats, full, rtol=1e-4, atol=1e-5)
