"""The weights AbU+ unlearns (cross-attention key/value projections) and per-sample gradients of them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.base import KV_SUFFIXES, find_kv_layers

__all__ = ["KV_SUFFIXES", "find_kv_layers", "kv_weights", "PerSampleGrads"]


def kv_weights(unet: nn.Module) -> dict[str, torch.Tensor]:
    """Return a detached clone of every key/value weight, keyed by layer name."""
    return {name: layer.weight.detach().clone() for name, layer in find_kv_layers(unet).items()}


class PerSampleGrads:
    """Capture per-sample gradients of the key/value weights while a summed loss back-propagates.

    A key/value Linear acts on every text token, so a sample's weight gradient is
    ``sum_t g_t a_tᵀ`` (g_t: gradient at the layer's output for token t, a_t: its input).
    The hooks keep the token-wise ``a`` and ``g`` so callers can also form the token-wise
    Kronecker factors (the standard KFAC "expand" treatment of weight sharing).

    The loss must be *summed* over the batch (not averaged), so that each sample's ``g`` is
    the gradient of its own loss.

    Example:
        >>> with PerSampleGrads(unet) as cap:  # doctest: +SKIP
        ...     loss_fn(unet, x, c, t, eps, ac).sum().backward()
        ...     grads = cap.per_sample()        # {name: (B, out, in)}
    """

    def __init__(self, unet: nn.Module) -> None:
        self.layers = find_kv_layers(unet)
        self.inputs: dict[str, torch.Tensor] = {}
        self.output_grads: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []
        self._unet = unet
        self._saved_flags: list[tuple[nn.Parameter, bool]] = []

    def __enter__(self) -> "PerSampleGrads":
        # Only the key/value weights need gradients; freezing the rest skips their weight-grad work.
        kv_params = {id(layer.weight) for layer in self.layers.values()}
        for param in self._unet.parameters():
            self._saved_flags.append((param, param.requires_grad))
            param.requires_grad_(id(param) in kv_params)
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._make_hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for param, flag in self._saved_flags:
            param.requires_grad_(flag)
        self._saved_flags.clear()

    def _make_hook(self, name: str):  # noqa: ANN202 - a torch hook
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.inputs[name] = inputs[0].detach()
            if output.requires_grad:

                def grad_hook(grad: torch.Tensor) -> None:
                    self.output_grads[name] = grad.detach()

                output.register_hook(grad_hook)

        return hook

    def tokens(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(a, g)`` for a layer as (B, L, in) and (B, L, out) float32 tensors."""
        if name not in self.output_grads:
            raise CheckpointError(
                f"no gradient reached layer {name!r}: call backward() on the summed loss first"
            )
        a = self.inputs[name].float()
        g = self.output_grads[name].float()
        if a.dim() == 2:  # a layer applied to (B, D) rather than (B, L, D)
            a, g = a[:, None], g[:, None]
        return a, g

    def per_sample(self) -> dict[str, torch.Tensor]:
        """Return ``{layer name: (B, out, in)}`` per-sample weight gradients."""
        out = {}
        for name in self.layers:
            a, g = self.tokens(name)
            out[name] = torch.einsum("blo,bli->boi", g, a)
        return out

    def clear(self) -> None:
        """Forget the captured tensors of the last batch."""
        self.inputs.clear()
        self.output_grads.clear()
