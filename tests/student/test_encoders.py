"""Frozen encoders: built from configs, loaded from folders, pooled as documented, refused when unsupported."""

from __future__ import annotations

import pytest
import torch
import transformers

from fastattr.errors import CheckpointError
from fastattr.student.encoders import (
    image_encoder_from_config,
    load_image_encoder,
    load_text_encoder,
    standin_vit_config,
)
from fastattr.student.pretrain import save_image_encoder


def test_image_encoder_cls_output_and_frozen(tmp_path):
    enc = image_encoder_from_config(standin_vit_config(16, hidden=32, layers=1))
    x = torch.randn(2, 3, 16, 16)
    out = enc(x)
    assert out.shape == (2, 32)
    assert not any(p.requires_grad for p in enc.parameters())
    torch.testing.assert_close(out, enc.model(pixel_values=x).last_hidden_state[:, 0])
    save_image_encoder(enc, tmp_path / "vit")
    back = load_image_encoder(tmp_path / "vit")
    torch.testing.assert_close(back(x), out)
    assert back.describe()["size"] == [16, 16] and back.mean == enc.mean


def test_dinov2_and_clip_vision_from_config():
    dino = transformers.Dinov2Config(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64)
    assert image_encoder_from_config(dino)(torch.randn(1, 3, 16, 16)).shape == (1, 32)
    clip = transformers.CLIPVisionConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=64)
    enc = image_encoder_from_config(clip)
    assert enc.pooling == "pooled" and enc(torch.randn(1, 3, 16, 16)).shape == (1, 32)


def test_text_mean_pooling_ignores_padding(text_encoder_dir):
    enc = load_text_encoder(text_encoder_dir, max_length=16)
    assert enc.pooling == "mean"
    short = enc.tokenizer.encode("a red square")
    ids = torch.tensor([short.ids])
    mask = torch.tensor([short.attention_mask])
    n = int(mask.sum())
    torch.testing.assert_close(enc(ids, mask), enc(ids[:, :n], mask[:, :n]), rtol=1e-5, atol=1e-6)
    enc.set_max_length(8)
    assert len(enc.tokenizer.encode("a red square on a grey background with stripes").ids) == 8


def test_unsupported_and_missing(text_encoder_dir, tmp_path):
    with pytest.raises(CheckpointError, match="image encoders must be vit, dinov2 or clip"):
        load_image_encoder(text_encoder_dir)
    with pytest.raises(CheckpointError, match="Cannot load an encoder"):
        load_image_encoder(tmp_path / "nothing-here")
    with pytest.raises(CheckpointError, match="pooling must be"):
        image_encoder_from_config(standin_vit_config(16, hidden=32, layers=1)).__class__(
            transformers.ViTModel(standin_vit_config(16, hidden=32, layers=1)), pooling="max", size=[16, 16],
            resize="bilinear", mean=[0.5] * 3, std=[0.5] * 3, source="x")
