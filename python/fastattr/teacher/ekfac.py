"""The Fisher approximations of AbU (diagonal) and AbU+ (EK-FAC): inverse-vector products, save, load."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .._atomic import write_bytes
from ..errors import CheckpointError, InputError

__all__ = ["FISHER_KINDS", "LayerFisher", "KVFisher", "load_fisher"]

FISHER_KINDS = ("ekfac", "diag")
_FORMAT = "fastattr-fisher"
_VERSION = 1


@dataclass
class LayerFisher:
    """Curvature of one (out × in) Linear weight.

    Attributes:
        q_a: (in, in) eigenvectors of the activation covariance A = E[a aᵀ].
        q_g: (out, out) eigenvectors of the output-gradient covariance G = E[g gᵀ].
        eigvals: (out, in) eigenvalue-corrected diagonal Λ = E[(Q_Gᵀ ∇W Q_A)²].
        diag: (out, in) diagonal Fisher E[(∇W)²] (AbU).
    """

    q_a: torch.Tensor
    q_g: torch.Tensor
    eigvals: torch.Tensor
    diag: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return (self.q_g.shape[0], self.q_a.shape[0])


@dataclass
class KVFisher:
    """Fisher of all cross-attention key/value weights; F⁻¹v per layer, diagonal or EK-FAC.

    The damping is λ = ``damping_factor`` · mean(Λ) per layer (mean of the diagonal for AbU).

    Example:
        >>> fisher = load_fisher("fisher.safetensors")  # doctest: +SKIP
        >>> step = fisher.inverse_vector_product(grads, kind="ekfac")  # doctest: +SKIP
    """

    layers: dict[str, LayerFisher]
    n_samples: int
    damping_factor: float = 0.1

    def damping(self, name: str, kind: str) -> float:
        """Per-layer damping λ = damping_factor · mean of the curvature values in use."""
        layer = self.layers[name]
        values = layer.eigvals if kind == "ekfac" else layer.diag
        return float(self.damping_factor * values.mean())

    def inverse_vector_product(
        self, vectors: dict[str, torch.Tensor], *, kind: str = "ekfac"
    ) -> dict[str, torch.Tensor]:
        """Return F⁻¹v per layer.

        EK-FAC: F⁻¹V = Q_G [(Q_Gᵀ V Q_A) ⊘ (Λ + λ)] Q_Aᵀ; diagonal: V ⊘ (diag + λ).

        Args:
            vectors: ``{layer name: (out, in) tensor}``, one entry per fitted layer.
            kind: ``"ekfac"`` (AbU+) or ``"diag"`` (AbU).
        """
        if kind not in FISHER_KINDS:
            raise InputError(f"unknown Fisher kind {kind!r}; use one of {FISHER_KINDS}")
        missing = sorted(set(self.layers) - set(vectors))
        extra = sorted(set(vectors) - set(self.layers))
        if missing or extra:
            raise InputError(
                f"the vectors do not match the Fisher's layers (missing {missing[:3]}, "
                f"unknown {extra[:3]}): fit the Fisher on the same model"
            )
        out = {}
        for name, layer in self.layers.items():
            v = vectors[name].to(torch.float64)
            if tuple(v.shape) != layer.shape:
                raise InputError(
                    f"layer {name!r}: vector shape {tuple(v.shape)} != Fisher shape {layer.shape}"
                )
            lam = self.damping(name, kind)
            if kind == "diag":
                res = v / (layer.diag.double() + lam)
            else:
                q_a, q_g = layer.q_a.double(), layer.q_g.double()
                res = q_g @ ((q_g.T @ v @ q_a) / (layer.eigvals.double() + lam)) @ q_a.T
            out[name] = res.to(vectors[name].dtype)
        return out

    def dense(self, name: str, *, kind: str = "ekfac") -> torch.Tensor:
        """The damped Fisher block of one layer as a dense matrix over vec(W) (column-major).

        Only for tests and small layers: (out·in)² entries.
        """
        layer = self.layers[name]
        lam = self.damping(name, kind)
        if kind == "diag":
            return torch.diag(layer.diag.double().T.reshape(-1) + lam)
        # vec(Q_G X Q_Aᵀ) = (Q_A ⊗ Q_G) vec(X) for column-major vec.
        basis = torch.kron(layer.q_a.double(), layer.q_g.double())
        values = layer.eigvals.double().T.reshape(-1) + lam
        return basis @ torch.diag(values) @ basis.T

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the Fisher as one safetensors file, atomically."""
        write_bytes(path, self.to_bytes())

    def digest(self) -> str:
        """A content hash of the factors and settings (the serialized bytes are not canonical)."""
        from ..data.cache import content_digest

        parts: list = [f"{self.n_samples}:{self.damping_factor!r}"]
        for name, layer in self.layers.items():
            parts += [name, *(getattr(layer, field).float().contiguous() for field in ("q_a", "q_g", "eigvals", "diag"))]
        return content_digest(*parts)

    def to_bytes(self) -> bytes:
        """The safetensors serialization that :meth:`save` writes."""
        from safetensors.torch import save

        tensors = {}
        for name, layer in self.layers.items():
            for field in ("q_a", "q_g", "eigvals", "diag"):
                tensors[f"{name}.{field}"] = getattr(layer, field).float().contiguous()
        metadata = {
            "format": _FORMAT,
            "version": str(_VERSION),
            "layers": json.dumps(list(self.layers)),
            "n_samples": str(self.n_samples),
            "damping_factor": repr(self.damping_factor),
        }
        return save(tensors, metadata=metadata)


def load_fisher(path: str | os.PathLike[str]) -> KVFisher:
    """Load a Fisher written by :meth:`KVFisher.save` (safetensors; nothing is executed).

    Example:
        >>> fisher = load_fisher("runs/fisher.safetensors")  # doctest: +SKIP
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"Fisher file {path} does not exist; fit one with `fastattr teacher fit-fisher`"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise CheckpointError(
                    f"{path} is not a fastattr Fisher file (format {meta.get('format')!r}); "
                    "fit one with `fastattr teacher fit-fisher`"
                )
            if int(meta.get("version", "0")) != _VERSION:
                raise CheckpointError(
                    f"{path} has Fisher version {meta.get('version')}, this fastattr reads "
                    f"{_VERSION}; refit it with `fastattr teacher fit-fisher`"
                )
            names = json.loads(meta["layers"])
            keys = set(handle.keys())
            layers = {}
            for name in names:
                fields = {}
                for field in ("q_a", "q_g", "eigvals", "diag"):
                    key = f"{name}.{field}"
                    if key not in keys:
                        raise CheckpointError(f"{path} lacks tensor {key!r}; refit the Fisher")
                    fields[field] = handle.get_tensor(key)
                layer = LayerFisher(**fields)
                out_dim, in_dim = layer.shape
                if (
                    tuple(layer.eigvals.shape) != (out_dim, in_dim)
                    or tuple(layer.diag.shape) != (out_dim, in_dim)
                    or layer.q_a.shape[0] != layer.q_a.shape[1]
                    or layer.q_g.shape[0] != layer.q_g.shape[1]
                ):
                    raise CheckpointError(f"{path}: inconsistent tensor shapes for layer {name!r}")
                layers[name] = layer
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types on a damaged file
        raise CheckpointError(
            f"cannot read Fisher file {path}: {exc}; refit it with `fastattr teacher fit-fisher`"
        ) from exc
    return KVFisher(
        layers=layers,
        n_samples=int(meta.get("n_samples", "0")),
        damping_factor=float(meta.get("damping_factor", "0.1")),
    )
