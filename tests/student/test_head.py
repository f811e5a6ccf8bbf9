"""The head: unit-norm output, shared weights for queries and items, logits, bad sizes."""

from __future__ import annotations

import pytest
import torch

from fastattr.errors import CheckpointError
from fastattr.student.head import Head, join_features


def test_output_is_unit_norm_and_logits_use_alpha_beta():
    head = Head(12, hidden=16, dim=8).eval()
    e = head(torch.randn(5, 12))
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(5))
    with torch.no_grad():
        head.alpha.fill_(3.0)
        head.beta.fill_(-1.0)
    torch.testing.assert_close(head.logits(e, e), torch.full((5,), 2.0))


def test_join_features_normalizes_each_part():
    joined = join_features(torch.full((1, 4), 10.0), torch.full((1, 2), 0.1))
    torch.testing.assert_close(joined[:, :4].norm(dim=-1), torch.ones(1))
    torch.testing.assert_close(joined[:, 4:].norm(dim=-1), torch.ones(1))


def test_three_hidden_layers_by_default():
    head = Head(10, hidden=6, dim=4)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [layer.out_features for layer in linears] == [6, 6, 6, 4]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == pytest.approx(0.1) for m in head.mlp)


@pytest.mark.parametrize("kwargs", [{"hidden": 0}, {"dim": 0}, {"dropout": 1.0}, {"n_hidden": 0}])
def test_bad_sizes(kwargs):
    with pytest.raises(CheckpointError, match="Head sizes"):
        Head(8, **kwargs)


def test_skip_path_starts_at_the_untuned_ranking():
    # With the MLP's output zero-initialized and a PCA skip path that keeps every direction
    # (dim = in_dim, an orthogonal map), cosines at initialization equal the untuned cosines.
    torch.manual_seed(0)
    feats = torch.randn(40, 6) @ torch.randn(6, 6)
    head = Head(6, hidden=8, dim=6, skip=True).eval()
    head.init_projection(feats)
    e = head(feats)
    expected = torch.nn.functional.normalize(feats, dim=-1)
    torch.testing.assert_close(e @ e.T, expected @ expected.T, rtol=1e-4, atol=1e-5)


def test_plain_mlp_has_no_skip():
    head = Head(6, hidden=8, dim=4, skip=False)
    assert head.skip is None and head.config["skip"] is False
    head.init_projection(torch.randn(10, 6))  # a no-op without the skip path


def test_image_weight_scales_the_parts():
    head = Head(5, hidden=8, dim=4, image_dim=2, image_weight=0.0).eval()
    a = torch.tensor([[1.0, 2.0, 0.3, 0.4, 0.5]])
    b = torch.tensor([[-7.0, 9.0, 0.3, 0.4, 0.5]])
    torch.testing.assert_close(head(a), head(b))  # weight 0: the image part is ignored
    assert "part_scale" not in head.state_dict()  # rebuilt from the config, not stored
    with pytest.raises(CheckpointError, match="image_weight"):
        Head(5, image_dim=2, image_weight=1.5)
