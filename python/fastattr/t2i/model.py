"""The tiny pixel-space text-to-image model: UNet, noise schedule, the loss, loading and saving."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._atomic import atomic_dir
from .._deps import require
from ..errors import CheckpointError, InputError
from .config import T2IConfig

torch = require("torch", feature="fastattr.t2i")

__all__ = [
    "T2IModel", "alphas_cumprod_for", "build_unet", "load_model", "loss", "save_model",
    "to_model_input",
]


def alphas_cumprod_for(schedule: str, num_train_timesteps: int) -> "torch.Tensor":
    """ᾱ_t of the DDPM forward process, float32 (T,).

    ``linear`` is DDPM's 1e-4..0.02; ``squaredcos_cap_v2`` is the cosine schedule of Nichol &
    Dhariwal (2021), which wastes fewer steps on pure noise at small resolutions.

    Example:
        >>> a = alphas_cumprod_for("linear", 1000)
        >>> a.shape, bool(a[0] > a[-1])
        (torch.Size([1000]), True)
    """
    n = int(num_train_timesteps)
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, n, dtype=torch.float64)
    elif schedule == "squaredcos_cap_v2":
        def abar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)],
                             dtype=torch.float64)
    else:
        raise CheckpointError(f"unknown beta_schedule {schedule!r}; use 'linear' or 'squaredcos_cap_v2'.")
    return torch.cumprod(1.0 - betas, dim=0).float()


def to_model_input(images: np.ndarray) -> "torch.Tensor":
    """uint8 (B, H, W, 3) images to the model's float32 (B, 3, H, W) in [-1, 1].

    Example:
        >>> to_model_input(np.full((1, 2, 2, 3), 255, np.uint8))[0, :, 0, 0].tolist()
        [1.0, 1.0, 1.0]
    """
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise InputError(f"images must be uint8 (B, H, W, 3), got {array.dtype} {array.shape}.")
    tensor = torch.from_numpy(np.array(array, copy=True)).permute(0, 3, 1, 2).float()
    return tensor / 127.5 - 1.0


def to_uint8(x: "torch.Tensor") -> np.ndarray:
    """The model's [-1, 1] (B, 3, H, W) back to uint8 (B, H, W, 3)."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def loss(
    unet: Any, images: "torch.Tensor", text_states: "torch.Tensor", timesteps: "torch.Tensor",
    noise: "torch.Tensor", alphas_cumprod: "torch.Tensor",
) -> "torch.Tensor":
    """Per-sample DDPM noise-prediction loss ‖ε − ε_θ(√ᾱ_t x + √(1−ᾱ_t) ε, t, c)‖² (mean over pixels).

    This is the single loss of the model: training minimizes its batch mean, and the teacher
    evaluates it with fixed ``noise`` before and after unlearning (DESIGN.md §2).

    Args:
        unet: a ``UNet2DConditionModel`` (or anything with its call signature).
        images: float32 (B, 3, H, W) in [-1, 1] (see :func:`to_model_input`).
        text_states: (B, L, D) frozen text states (``T2IModel.encode_text``).
        timesteps: int64 (B,) in [0, T).
        noise: (B, 3, H, W) the ε to add and predict.
        alphas_cumprod: (T,) ᾱ of the schedule.

    Returns:
        (B,) float32 tensor, differentiable w.r.t. the UNet's parameters.

    Example:
        >>> m = T2IModel.create(T2IConfig.preset("tiny"))
        >>> x = torch.zeros(2, 3, 8, 8); s = torch.zeros(2, 4, 384)
        >>> loss(m.unet, x, s, torch.tensor([1, 500]), torch.ones_like(x), m.alphas_cumprod).shape
        torch.Size([2])
    """
    timesteps = timesteps.to(images.device).long()
    a = alphas_cumprod.to(images.device)[timesteps].view(-1, 1, 1, 1).to(images.dtype)
    noisy = a.sqrt() * images + (1 - a).sqrt() * noise
    pred = unet(noisy, timesteps, encoder_hidden_states=text_states).sample
    return (pred.float() - noise.float()).pow(2).mean(dim=(1, 2, 3))


def build_unet(config: T2IConfig) -> Any:
    """A freshly initialized ``UNet2DConditionModel`` for ``config`` (seeded by the caller)."""
    diffusers = require("diffusers", feature="fastattr.t2i")
    try:
        return diffusers.UNet2DConditionModel(**config.unet)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid UNet config {config.unet} ({exc}).") from None


class T2IModel:
    """A trained (or fresh) text-to-image model: UNet + schedule + frozen text encoder.

    Attributes:
        unet: diffusers ``UNet2DConditionModel``.
        alphas_cumprod: float32 (T,) ᾱ of the DDPM schedule.
        num_train_timesteps: T.
        image_size: side length of generated images.
        config: the :class:`T2IConfig` it was built from.

    Example:
        >>> m = T2IModel.create(T2IConfig.preset("tiny"))
        >>> m.image_size, m.num_train_timesteps
        (8, 1000)
    """

    def __init__(self, config: T2IConfig, unet: Any, path: Path | None = None) -> None:
        self.config = config
        self.unet = unet
        self.path = path
        self.alphas_cumprod = alphas_cumprod_for(config.beta_schedule, config.num_train_timesteps)
        self.num_train_timesteps = int(config.num_train_timesteps)
        self.image_size = int(config.image_size)
        self._text_encoder: Any = None

    @classmethod
    def create(cls, config: T2IConfig) -> "T2IModel":
        """A new model with weights initialized from ``config.seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            unet = build_unet(config)
        return cls(config, unet)

    @property
    def text_encoder(self) -> Any:
        """The frozen :class:`~fastattr.t2i.text.TextEncoder` (loaded on first use)."""
        if self._text_encoder is None:
            from .text import TextEncoder

            self._text_encoder = TextEncoder(
                self.config.text_encoder, max_length=self.config.text_max_length
            )
        return self._text_encoder

    def encode_text(self, captions: Sequence[str], *, progress: bool = False) -> "torch.Tensor":
        """Frozen text states (B, L, D) float32 for ``captions`` (no grad, cached per caption)."""
        return self.text_encoder(list(captions), progress=progress)

    def sample(
        self, captions: Sequence[str], *, seed: int = 0, steps: int = 25,
        guidance_scale: float = 3.0, batch_size: int = 256, progress: bool = False,
        **options: Any,
    ) -> np.ndarray:
        """Generate one image per caption: uint8 (B, H, W, 3). See :func:`fastattr.t2i.sample.ddim_sample`."""
        from .sample import ddim_sample

        return ddim_sample(
            self, captions, seed=seed, steps=steps, guidance_scale=guidance_scale,
            batch_size=batch_size, progress=progress, **options,
        )


def save_model(
    path: str | os.PathLike[str], model: T2IModel, *, train_state: dict[str, Any] | None = None,
    extra_tensors: dict[str, "torch.Tensor"] | None = None,
) -> Path:
    """Write the model folder (``config.json``, ``unet.safetensors``, ``train_state.json``) atomically.

    ``extra_tensors`` go to ``optimizer.safetensors`` (training state for resume).
    """
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in model.unet.state_dict().items()}
    target = Path(path)
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        save_file(state, str(tmp / "unet.safetensors"))
        (tmp / "train_state.json").write_text(
            json.dumps(train_state or {"step": 0, "seed": model.config.seed}, indent=2) + "\n"
        )
        if extra_tensors:
            save_file({k: v.contiguous() for k, v in extra_tensors.items()},
                      str(tmp / "optimizer.safetensors"))
    model.path = target
    return target


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file of a model folder or raise CheckpointError saying which."""
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {path.name}: it is not a {what}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}).") from None


def load_model(path: str | os.PathLike[str]) -> T2IModel:
    """Load a model folder written by ``fastattr t2i train``.

    Raises:
        CheckpointError: the folder, config or weights are missing, corrupt or do not match.

    Example:
        >>> import tempfile
        >>> p = save_model(tempfile.mkdtemp() + "/m", T2IModel.create(T2IConfig.preset("tiny")))
        >>> load_model(p).image_size
        8
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(
            f"model folder {root} does not exist. Train one with `fastattr t2i train`."
        )
    config = T2IConfig.from_dict(read_json(root / "config.json", "t2i model folder"))
    weights = root / "unet.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{root} has no unet.safetensors; the checkpoint is incomplete.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} cannot be read ({exc}); retrain or restore it.") from None
    model = T2IModel.create(config)
    try:
        model.unet.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{weights} does not match config.json: {str(exc).splitlines()[0]}"
        ) from None
    model.unet.eval()
    model.path = root
    return model
