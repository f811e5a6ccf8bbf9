"""The world-pretrained image encoder: attribute targets, a short training run, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fastattr.errors import DatasetError
from fastattr.student.pretrain import attribute_targets, pretrain_image_encoder


def test_targets_flatten_nested_attributes():
    attrs = [{"background": "grey", "shapes": [{"colour": "red"}, {"colour": "blue"}]},
             {"background": "black", "shapes": [{"colour": "red"}]}]
    t = attribute_targets(attrs)
    assert set(t) == {"background", "shapes.count", "shapes.1.colour"}  # shapes.0.colour has one value
    assert t["shapes.1.colour"].tolist() == [1, 0]  # '"blue"' vs the '"<absent>"' class


def test_pretraining_learns_the_background(world):
    images, attrs = np.asarray(world.images), world.attributes
    enc, metrics = pretrain_image_encoder(images, attrs, steps=80, batch_size=64, lr=3e-3, hidden=32, layers=1,
                                          progress=False)
    # Four backgrounds: chance is about 0.25-0.4; a plain colour fill is the easiest attribute to read.
    assert metrics["val_accuracy"]["background"] > 0.6
    assert not any(p.requires_grad for p in enc.parameters())


def test_errors(world):
    with pytest.raises(DatasetError, match="one attribute dict per image"):
        pretrain_image_encoder(np.asarray(world.images), world.attributes[:3], steps=1)
    with pytest.raises(DatasetError, match="nothing to predict"):
        pretrain_image_encoder(np.asarray(world.images[:4]), [{"a": 1}] * 4, steps=1)
