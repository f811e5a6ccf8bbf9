"""The DiffusionModel seam: what the teacher, training and counterfactual evaluation need of a T2I model."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["DiffusionModel", "KV_SUFFIXES", "find_kv_layers"]

# DESIGN.md §2.1: only the cross-attention key and value projections (Stable Diffusion's names).
KV_SUFFIXES = ("attn2.to_k", "attn2.to_v")


def find_kv_layers(unet: Any) -> dict[str, Any]:
    """The cross-attention key/value Linear layers of a UNet, by module name, in model order.

    Example:
        >>> layers = find_kv_layers(unet)  # doctest: +SKIP
        >>> sorted(layers)[0]  # doctest: +SKIP
        'down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k'
    """
    from torch import nn

    from ..errors import CheckpointError

    layers = {name: module for name, module in unet.named_modules()
              if name.endswith(KV_SUFFIXES) and isinstance(module, nn.Linear)}
    if not layers:
        raise CheckpointError(
            f"{type(unet).__name__} has no cross-attention key/value layers (modules named "
            f"'*{KV_SUFFIXES[0]}' / '*{KV_SUFFIXES[1]}'): the teacher needs a text-conditioned "
            "UNet with Stable Diffusion's module names, e.g. diffusers' UNet2DConditionModel.")
    return layers


class DiffusionModel(abc.ABC):
    """A text-to-image diffusion model seen through the few operations attribution needs.

    The teacher talks to a model only through this class (DESIGN.md §8), so a user's Stable
    Diffusion-style pipeline folder and the embedded world's pixel-space model are served by the
    same code. Tensors are torch tensors on the CPU unless said otherwise.

    Attributes:
        unet: the denoiser (a diffusers ``UNet2DConditionModel``); :meth:`loss` calls it, so an
            in-place change of its weights (the teacher's unlearning step) changes the loss.
        resolution: side, in pixels, of the square images the model takes and generates.
        num_train_timesteps: T of the training noise schedule.
        prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"``, from the scheduler.
        latent: True when x is a VAE latent, False in pixel space.
        path: the folder the model was loaded from, if any.

    Example:
        >>> model = load_diffusion_model("runs/t2i")               # doctest: +SKIP
        >>> x = model.to_model_space(images)                       # doctest: +SKIP
        >>> c = model.encode_prompts(captions)                     # doctest: +SKIP
        >>> model.loss(x, c, timesteps, torch.randn_like(x)).shape  # doctest: +SKIP
        torch.Size([8])
    """

    unet: Any
    resolution: int
    num_train_timesteps: int
    prediction_type: str
    latent: bool
    path: Path | None

    @property
    @abc.abstractmethod
    def model_space_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one model-space input x (latent or pixel)."""

    @abc.abstractmethod
    def to_model_space(self, images: np.ndarray) -> Any:
        """uint8 (B, R, R, 3) images at :attr:`resolution` to x, float32 (B, C, h, w), no grad.

        Pixel models: x = image / 127.5 − 1 channels-first. Latent models: the VAE posterior mean
        times ``vae.config.scaling_factor`` (deterministic, so it can be cached once per item).
        """

    @abc.abstractmethod
    def encode_prompts(self, prompts: Sequence[str]) -> Any:
        """The condition c: float32 (B, L, D) text states, no grad, as the pipeline computes them.

        A prompt's states never depend on the other prompts of its batch (fixed length L).
        """

    @abc.abstractmethod
    def loss(self, x: Any, text_states: Any, timesteps: Any, noise: Any) -> Any:
        """The per-sample training loss at given (t, noise): float32 (B,), differentiable.

        x_t comes from the model's own scheduler (``add_noise``); the target is the noise for
        ``epsilon``, ``get_velocity`` for ``v_prediction`` and x for ``sample``; the loss is the
        mean squared error over all elements of a sample.
        """

    @abc.abstractmethod
    def generate(self, prompts: Sequence[str], *, seed: int = 0, steps: int = 25,
                 guidance_scale: float = 3.0, batch_size: int = 16,
                 progress: bool = False) -> np.ndarray:
        """One image per prompt with classifier-free guidance, uint8 (B, R, R, 3).

        The same prompts and seed give the same images.
        """

    @abc.abstractmethod
    def digest(self) -> str:
        """A hex digest of everything that changes :meth:`loss` or :meth:`to_model_space`.

        Keys the caches of model-space inputs and base losses.
        """

    def kv_layers(self) -> dict[str, Any]:
        """The cross-attention key/value Linear layers the teacher unlearns (``attn2.to_k/to_v``)."""
        return find_kv_layers(self.unet)
