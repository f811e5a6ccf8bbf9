"""Tests of fastattr.teacher.ekfac: inverse-vector products against dense solves; save/load."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fastattr.errors import CheckpointError, InputError  # noqa: E402
from fastattr.teacher.ekfac import KVFisher, LayerFisher, load_fisher  # noqa: E402


def _orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q


@pytest.fixture()
def fisher() -> KVFisher:
    gen = torch.Generator().manual_seed(0)
    layer = LayerFisher(
        q_a=_orthogonal(3, gen),
        q_g=_orthogonal(4, gen),
        eigvals=torch.rand(4, 3, generator=gen, dtype=torch.float64) + 0.05,
        diag=torch.rand(4, 3, generator=gen, dtype=torch.float64) + 0.05,
    )
    return KVFisher(layers={"l.attn2.to_k": layer}, n_samples=10)


@pytest.mark.parametrize("kind", ["ekfac", "diag"])
def test_inverse_vector_product_equals_dense_solve(fisher: KVFisher, kind: str) -> None:
    layer = fisher.layers["l.attn2.to_k"]
    lam = 0.1 * float((layer.eigvals if kind == "ekfac" else layer.diag).mean())
    if kind == "ekfac":
        # Build the damped EK-FAC matrix from its definition, independent of KVFisher.dense:
        # F = Σ_ij (Λ_ij + λ) vec(q_g_i q_a_jᵀ) vec(q_g_i q_a_jᵀ)ᵀ.
        dense = torch.zeros(12, 12, dtype=torch.float64)
        for i in range(4):
            for j in range(3):
                u = torch.outer(layer.q_g[:, i], layer.q_a[:, j]).reshape(-1)
                dense += (layer.eigvals[i, j] + lam) * torch.outer(u, u)
    else:
        dense = torch.diag(layer.diag.reshape(-1) + lam)
    v = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    expected = torch.linalg.solve(dense, v.reshape(-1)).reshape(4, 3)
    got = fisher.inverse_vector_product({"l.attn2.to_k": v}, kind=kind)["l.attn2.to_k"]
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # The column-major dense helper agrees with the row-major construction above.
    x = torch.linalg.solve(fisher.dense("l.attn2.to_k", kind=kind), v.T.reshape(-1)).reshape(3, 4).T
    torch.testing.assert_close(x, expected, rtol=1e-10, atol=1e-12)


def test_save_load_roundtrip(fisher: KVFisher, tmp_path) -> None:
    path = tmp_path / "f.safetensors"
    fisher.save(path)
    loaded = load_fisher(path)
    assert list(loaded.layers) == list(fisher.layers)
    assert loaded.n_samples == 10 and loaded.damping_factor == pytest.approx(0.1)
    v = {"l.attn2.to_k": torch.randn(4, 3)}
    torch.testing.assert_close(
        loaded.inverse_vector_product(v), fisher.inverse_vector_product(v), rtol=1e-5, atol=1e-6
    )


def test_errors(fisher: KVFisher, tmp_path) -> None:
    with pytest.raises(InputError, match="unknown Fisher kind"):
        fisher.inverse_vector_product({"l.attn2.to_k": torch.zeros(4, 3)}, kind="kfac")
    with pytest.raises(InputError, match="do not match"):
        fisher.inverse_vector_product({"other": torch.zeros(4, 3)})
    with pytest.raises(InputError, match="vector shape"):
        fisher.inverse_vector_product({"l.attn2.to_k": torch.zeros(3, 4)})
    with pytest.raises(CheckpointError, match="does not exist"):
        load_fisher(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read Fisher file"):
        load_fisher(bad)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign), metadata={"format": "other"})
    with pytest.raises(CheckpointError, match="not a fastattr Fisher"):
        load_fisher(foreign)
