"""EmbedderSpec and the torch-free preprocessing: round trip, exact values, SDK parity, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastattr.errors import CheckpointError, InputError
from fastattr.student.spec import EmbedderSpec, load_tokenizer, preprocess_images, tokenize


def make_spec(**kw) -> EmbedderSpec:
    base = dict(size=[8, 8], resize="bilinear", mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.5],
                tokenizer="tokenizer.json", max_length=12, dim=16)
    base.update(kw)
    return EmbedderSpec(**base)


def test_round_trip_is_plain_json():
    import json

    spec = make_spec()
    assert EmbedderSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_preprocess_values_and_layout():
    img = np.zeros((1, 8, 8, 3), np.uint8)
    img[..., 0] = 255
    out = preprocess_images(img, make_spec())
    assert out.shape == (1, 3, 8, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], [(1 - 0.5) / 0.2, (0 - 0.4) / 0.25, (0 - 0.3) / 0.5], rtol=1e-6)


def test_resize_uses_pillow_filter():
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    spec = make_spec(resize="bicubic", mean=[0.0] * 3, std=[1.0] * 3)
    expected = np.asarray(Image.fromarray(img).resize((8, 8), Image.Resampling.BICUBIC)) / 255.0
    np.testing.assert_allclose(preprocess_images(img, spec)[0], expected.transpose(2, 0, 1), rtol=1e-6)


def test_matches_sdk_preprocessing():
    preprocess = pytest.importorskip("fastattr.preprocess")
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    spec = make_spec(resize="bicubic")
    sdk_spec = preprocess.PreprocessSpec(size=(8, 8), resize="bicubic", mean=tuple(spec.mean), std=tuple(spec.std))
    np.testing.assert_array_equal(preprocess_images(imgs, spec), preprocess.preprocess_images(imgs, sdk_spec))


def test_tokenize_fixed_length(student_dir):
    from fastattr.student import load_embedder

    _, spec = load_embedder(student_dir)
    ids, mask = tokenize(["a red square", "a large striped blue circle in the center " * 8], spec)
    assert ids.shape == mask.shape == (2, spec.max_length) and ids.dtype == np.int64
    assert mask[0].sum() < spec.max_length and mask[1].sum() == spec.max_length
    preprocess = pytest.importorskip("fastattr.preprocess")
    sdk = preprocess.Tokenizer.from_file(spec.tokenizer, max_length=spec.max_length)
    sdk_ids, sdk_mask = sdk(["a red square", "a large striped blue circle in the center " * 8])
    np.testing.assert_array_equal(ids, sdk_ids)
    np.testing.assert_array_equal(mask, sdk_mask)


@pytest.mark.parametrize(
    "kw, message",
    [({"size": [8]}, "size must be"), ({"resize": "lanczos"}, "resize is 'lanczos'"),
     ({"std": [0.0, 1.0, 1.0]}, "std > 0"), ({"dim": 0}, "must be positive")],
)
def test_bad_spec(kw, message):
    with pytest.raises(CheckpointError, match=message):
        make_spec(**kw)


def test_bad_dict_and_inputs(tmp_path: Path):
    data = make_spec().to_dict()
    del data["dim"]
    with pytest.raises(CheckpointError, match="missing keys \\['dim'\\]"):
        EmbedderSpec.from_dict(data)
    with pytest.raises(InputError, match="uint8 RGB"):
        preprocess_images(np.zeros((2, 8, 8), np.uint8), make_spec())
    with pytest.raises(InputError, match="uint8 RGB"):
        preprocess_images(np.zeros((1, 8, 8, 3), np.float32), make_spec())
    with pytest.raises(InputError, match="sequence of str"):
        tokenize("a red square", make_spec())
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tokenizer(tmp_path / "nope.json")
