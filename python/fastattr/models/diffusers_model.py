"""The DiffusionModel adapter over a diffusers pipeline folder (Stable Diffusion-style latent, or pixel space)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._deps import require
from .._progress import make_progress
from ..errors import CheckpointError, InputError
from .base import DiffusionModel

torch = require("torch", feature="fastattr.models")
diffusers = require("diffusers", feature="fastattr.models")

__all__ = ["DiffusersModel", "load_diffusion_model", "PIPELINE_LAYOUT", "images_to_unit"]

PIPELINE_LAYOUT = ("model_index.json, unet/, text_encoder/, tokenizer/, scheduler/ "
                   "(and vae/ for a latent model)")
REQUIRED = ("unet", "text_encoder", "tokenizer", "scheduler")


def images_to_unit(images: np.ndarray) -> "torch.Tensor":
    """uint8 (B, H, W, 3) to float32 (B, 3, H, W) in [-1, 1], the range diffusers models take.

    Example:
        >>> images_to_unit(np.full((1, 2, 2, 3), 255, np.uint8))[0, :, 0, 0].tolist()
        [1.0, 1.0, 1.0]
    """
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise InputError(f"images must be uint8 (B, H, W, 3), got {array.dtype} {array.shape}.")
    return torch.from_numpy(np.array(array, copy=True)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class DiffusersModel(DiffusionModel):
    """A diffusers text-to-image pipeline behind the :class:`DiffusionModel` seam.

    The training noise schedule is diffusers' ``DDPMScheduler`` built from the pipeline's scheduler
    config (as diffusers' own training scripts do), so ``add_noise``, ``get_velocity`` and the
    ``prediction_type`` are the library's; sampling is the pipeline's ``__call__`` with its own
    scheduler. With a ``vae`` the model works on ``latent_dist.mean × scaling_factor``.

    Example:
        >>> model = load_diffusion_model("runs/demo/t2i")  # doctest: +SKIP
        >>> model.latent, model.resolution                  # doctest: +SKIP
        (False, 16)
    """

    def __init__(self, pipeline: Any, path: str | os.PathLike[str] | None = None) -> None:
        missing = [name for name in REQUIRED if getattr(pipeline, name, None) is None]
        if missing:
            raise CheckpointError(
                f"the pipeline {type(pipeline).__name__} has no {', '.join(missing)}; fastattr needs "
                f"a text-conditioned pipeline with {PIPELINE_LAYOUT}.")
        self.pipeline = pipeline
        self.unet = pipeline.unet
        self.vae = getattr(pipeline, "vae", None)
        self.latent = self.vae is not None
        self.path = Path(path) if path is not None else None
        self.noise_scheduler = diffusers.DDPMScheduler.from_config(pipeline.scheduler.config)
        self.prediction_type = str(self.noise_scheduler.config.prediction_type)
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise CheckpointError(f"scheduler prediction_type {self.prediction_type!r} is not supported; "
                                  "use epsilon, v_prediction or sample.")
        self.num_train_timesteps = int(self.noise_scheduler.config.num_train_timesteps)
        size = self.unet.config.sample_size
        side = int(size if isinstance(size, int) else size[0])
        self.scale = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.latent else 1
        self.resolution = side * self.scale
        for module in (self.unet, self.vae, pipeline.text_encoder):
            if module is not None:
                module.eval()
        pipeline.text_encoder.requires_grad_(False)
        if self.vae is not None:
            self.vae.requires_grad_(False)
        pipeline.set_progress_bar_config(disable=True)

    @property
    def alphas_cumprod(self) -> "torch.Tensor":
        """ᾱ_t of the training schedule, float32 (T,)."""
        return self.noise_scheduler.alphas_cumprod.float()

    @property
    def model_space_shape(self) -> tuple[int, int, int]:
        side = self.resolution // self.scale
        return int(self.unet.config.in_channels), side, side

    def to_model_space(self, images: np.ndarray) -> "torch.Tensor":
        array = np.asarray(images)
        if array.ndim == 4 and array.shape[1:3] != (self.resolution, self.resolution):
            raise InputError(f"images are {array.shape[1]}x{array.shape[2]}; this model takes "
                             f"{self.resolution}x{self.resolution} (resize them, e.g. --image-size "
                             f"{self.resolution} where a command offers it).")
        x = images_to_unit(array)
        if not self.latent:
            return x
        with torch.no_grad():
            mean = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean.float()
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (mean - shift) * float(self.vae.config.scaling_factor)

    def encode_prompts(self, prompts: Sequence[str]) -> "torch.Tensor":
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise InputError("encode_prompts needs at least one prompt.")
        from .pixel_pipeline import PixelDiffusionPipeline

        with torch.no_grad():
            if isinstance(self.pipeline, PixelDiffusionPipeline):
                return self.pipeline.encode_prompt(prompts)
            # Stable Diffusion's own prompt encoding (fixed max_length padding, clip_skip as configured).
            states, _ = self.pipeline.encode_prompt(prompts, self.pipeline.device, 1, False)
        return states.float()

    def noisy_and_target(self, x: "torch.Tensor", timesteps: "torch.Tensor",
                         noise: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """x_t and the regression target at (t, noise), from diffusers' scheduler."""
        timesteps = timesteps.to(x.device).long()
        noisy = self.noise_scheduler.add_noise(x, noise, timesteps)
        if self.prediction_type == "epsilon":
            target = noise
        elif self.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(x, noise, timesteps)
        else:
            target = x
        return noisy, target

    def loss(self, x: Any, text_states: Any, timesteps: Any, noise: Any) -> "torch.Tensor":
        noisy, target = self.noisy_and_target(x, timesteps, noise)
        pred = self.unet(noisy, timesteps.to(x.device).long(), encoder_hidden_states=text_states).sample
        return (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)

    def generate(self, prompts: Sequence[str], *, seed: int = 0, steps: int = 25,
                 guidance_scale: float = 3.0, batch_size: int = 16,
                 progress: bool = False) -> np.ndarray:
        prompts = list(prompts)
        if not prompts:
            raise InputError("generate() needs at least one prompt.")
        starts = make_progress(range(0, len(prompts), batch_size), desc="generate", unit="batch",
                               disable=not progress)
        out = []
        was_training = self.unet.training
        self.unet.eval()
        try:
            for start in starts:
                chunk = prompts[start:start + batch_size]
                # One generator per prompt: an image depends on (seed, its index), not on the batching.
                generators = [torch.Generator().manual_seed(int(seed) * 1_000_003 + start + i)
                              for i in range(len(chunk))]
                result = self.pipeline(chunk, num_inference_steps=steps, guidance_scale=guidance_scale,
                                       generator=generators, output_type="np",
                                       height=self.resolution, width=self.resolution)
                out.append((np.clip(np.asarray(result.images), 0, 1) * 255).round().astype(np.uint8))
        finally:
            self.unet.train(was_training)
        return np.concatenate(out)

    def digest(self) -> str:
        h = hashlib.sha256()
        # diffusers' private config keys are bookkeeping, and "_use_default_values" is listed from a
        # set, in an order that changes with every process's hash seed: leave them out, or no
        # cache key and no resume fingerprint would survive a restart.
        scheduler = {k: v for k, v in dict(self.noise_scheduler.config).items() if not k.startswith("_")}
        h.update(json.dumps({"class": type(self.pipeline).__name__, "latent": self.latent,
                             "scheduler": scheduler}, sort_keys=True, default=str).encode())
        for name, module in (("unet", self.unet), ("vae", self.vae),
                             ("text_encoder", self.pipeline.text_encoder)):
            if module is None:
                continue
            h.update(name.encode())
            for key, tensor in module.state_dict().items():
                h.update(key.encode())
                h.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes()
                         if tensor.numel() else b"")
        return h.hexdigest()


def _listing(root: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    return ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "nothing"


def _check_folder(root: Path) -> dict[str, Any]:
    index_file = root / "model_index.json"
    if not index_file.is_file():
        hint = ""
        if (root / "unet.safetensors").is_file():
            hint = (" It looks like a model folder of an older fastattr (config.json + "
                    "unet.safetensors); retrain it with `fastattr t2i train`, which writes the diffusers layout.")
        raise CheckpointError(f"{root} is not a diffusers pipeline folder: expected {PIPELINE_LAYOUT}; "
                              f"found {_listing(root)}.{hint}")
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{index_file} is not valid JSON ({exc}).") from None
    listed = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0]}
    absent = [name for name in REQUIRED if name not in listed]
    if absent:
        raise CheckpointError(f"{index_file} lists no {', '.join(absent)}: fastattr needs a text-conditioned "
                              f"pipeline ({PIPELINE_LAYOUT}); it lists {', '.join(sorted(listed)) or 'nothing'}.")
    missing = [f"{name}/" for name in sorted(listed) if not (root / name).is_dir()]
    if missing:
        raise CheckpointError(f"{root}: model_index.json lists {', '.join(missing)} but the folder lacks "
                              f"them; found {_listing(root)}. Copy the whole pipeline folder.")
    return index


def load_diffusion_model(path: str | os.PathLike[str], *, device: str = "cpu") -> DiffusersModel:
    """Load a diffusers pipeline folder (``save_pretrained`` layout) or, with a network, a hub id.

    ``fastattr t2i train`` folders (class ``PixelDiffusionPipeline``) load through the same call.

    Raises:
        CheckpointError: the folder is missing, is not a pipeline, lacks a component, or a
            component cannot be loaded; the message says what was expected and what was found.

    Example:
        >>> model = load_diffusion_model("models/sd-tiny")  # doctest: +SKIP
    """
    root = Path(path)
    source: str = str(root)
    if root.is_dir():
        index = _check_folder(root)
        class_name = index.get("_class_name")
    elif root.exists():
        raise CheckpointError(f"{root} is a file; give the pipeline folder ({PIPELINE_LAYOUT}).")
    elif str(path).count("/") == 1 and not str(path).startswith((".", "~")):
        class_name = None  # a hub id: diffusers resolves it (needs a network)
    else:
        raise CheckpointError(f"model folder {root} does not exist. Give a diffusers pipeline folder "
                              f"({PIPELINE_LAYOUT}), e.g. one `fastattr t2i train` wrote.")
    from .pixel_pipeline import PixelDiffusionPipeline

    loader = PixelDiffusionPipeline if class_name == "PixelDiffusionPipeline" else diffusers.DiffusionPipeline
    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()  # "safety checker disabled" noise
    try:
        pipeline = loader.from_pretrained(source)
    except (OSError, ValueError, KeyError, AttributeError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load the pipeline at {source} ({first}). Expected {PIPELINE_LAYOUT} "
                              "as diffusers' save_pretrained writes it.") from None
    finally:
        diffusers.utils.logging.set_verbosity(verbosity)
    pipeline.to(device)
    return DiffusersModel(pipeline, path=root if root.is_dir() else None)
