"""Training the tiny text-to-image model: fixed seeds, caption dropout, checkpoints and resume."""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._atomic import check_replaceable
from .._deps import require
from .._progress import make_progress
from ..errors import CheckpointError, DatasetError
from .config import T2IConfig
from .model import CONFIG_FILE, build_pipeline, load_model, read_json, save_model

torch = require("torch", feature="fastattr.t2i")

__all__ = ["train", "step_generator", "learning_rate_at", "training_loss"]


def step_generator(seed: int, step: int) -> "torch.Generator":
    """The random stream of one training step: batch, timesteps, noise and dropout.

    Deriving it from (seed, step) instead of carrying one stream makes a resumed run draw exactly
    what an uninterrupted one would, without saving generator state.
    """
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63))


def learning_rate_at(config: T2IConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak at ``config.steps``.

    Example:
        >>> cfg = T2IConfig(steps=100, warmup_steps=10, learning_rate=1.0)
        >>> round(learning_rate_at(cfg, 4), 2), round(learning_rate_at(cfg, 99), 2)
        (0.5, 0.1)
    """
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    span = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    return config.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def _batch_indices(n: int, batch_size: int, seed: int, step: int) -> "torch.Tensor":
    # Epoch-wise permutations: every item is seen once per epoch, still a function of (seed, step).
    per_epoch = max(n // batch_size, 1)
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) * 7919 + epoch))
    return perm[pos * batch_size:(pos + 1) * batch_size] if n >= batch_size else perm


def _optimizer_tensors(optimizer: Any, names: dict[int, str]) -> dict[str, "torch.Tensor"]:
    out = {}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            out[f"{names[id(param)]}::{key}"] = value.detach().clone().reshape(value.shape)
    return out


def _load_optimizer(optimizer: Any, unet: Any, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); cannot resume.") from None
    for name, param in unet.named_parameters():
        state = {k.split("::", 1)[1]: v for k, v in tensors.items() if k.split("::", 1)[0] == name}
        if state:
            optimizer.state[param] = state


def _autocast(precision: str) -> Any:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise CheckpointError(f"unknown precision {precision!r}; use 'fp32' or 'bf16'.")


def training_loss(model: Any, x: "torch.Tensor", states: "torch.Tensor", timesteps: "torch.Tensor",
                  noise: "torch.Tensor", min_snr_gamma: float) -> "torch.Tensor":
    """Per-sample loss of one training step: the model's own loss, Min-SNR-γ weighted when γ > 0.

    The weight is min(SNR_t, γ) / SNR_t for ε-prediction and min(SNR_t, γ) / (SNR_t + 1) for
    v-prediction (Hang et al. 2023), so both weight the x0 error the same way.
    """
    per_sample = model.loss(x, states, timesteps, noise)
    if min_snr_gamma > 0:
        abar = model.alphas_cumprod[timesteps]
        snr = abar / (1 - abar)
        denominator = snr + 1 if model.prediction_type == "v_prediction" else snr
        per_sample = per_sample * (snr.clamp(max=min_snr_gamma) / denominator)
    return per_sample


def train(
    dataset: Any, out: str | os.PathLike[str], config: T2IConfig | None = None, *,
    resume: bool = False, progress: bool = True, threads: int | None = None, overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Any:
    """Train a pixel-space model on ``dataset`` (a :class:`fastattr.data.Dataset` or any folder
    :func:`fastattr.data.load_dataset` reads, resized to ``config.image_size``) into ``out``.

    Checkpoints every ``config.checkpoint_every`` steps and at the end. With ``resume=True`` an
    existing folder at ``out`` continues from its last checkpoint (its config wins, except that
    ``steps`` may be raised) and ends with exactly the weights of an uninterrupted run. Anything
    at ``out`` but a t2i model folder is refused before training unless ``overwrite``. Returns the
    trained :class:`fastattr.models.DiffusersModel`.

    Example:
        >>> model = train("runs/world", "runs/t2i", T2IConfig.preset("demo"))  # doctest: +SKIP
        >>> model.resolution                                                  # doctest: +SKIP
        16
    """
    from ..data import Dataset, load_dataset
    from ..models import DiffusersModel

    torch.set_num_threads(threads or os.cpu_count() or 1)
    config = config or T2IConfig.preset("demo")
    out = Path(out)
    # Refused now, not at the first checkpoint minutes later: only a model folder (or overwrite) is replaced.
    check_replaceable(out, CONFIG_FILE, overwrite=overwrite, what="t2i model folder")
    start_step = 0
    if resume and (out / "train_state.json").is_file():
        model, saved = load_model(out)
        state = read_json(out / "train_state.json", "t2i model folder")
        start_step = int(state.get("step", 0))
        if config.steps > saved.steps:
            saved.steps = config.steps
        config = saved
    else:
        model = None
    if config.ema_decay != 0:
        raise CheckpointError("ema_decay is reserved and must be 0: weight averaging is not implemented.")
    _autocast(config.precision)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, image_size=config.image_size,
                                                                  progress=progress)
    h, w = ds.image_size
    if h != w or h != config.image_size:
        raise DatasetError(
            f"dataset images are {h}x{w} but the model config expects {config.image_size}x{config.image_size}; "
            f"load the dataset with image_size={config.image_size} (the CLI does: --image-size).")
    if len(ds) < 1:
        raise DatasetError("the dataset has no items.")
    if model is None:
        model = DiffusersModel(build_pipeline(config))
    pipeline, unet = model.pipeline, model.unet
    if config.channels_last:
        unet.to(memory_format=torch.channels_last)
    images = model.to_model_space(np.asarray(ds.images))
    # The frozen encoder is far bigger than the UNet: encode every distinct caption once.
    unique = list(dict.fromkeys(ds.captions))
    row_of = {c: i for i, c in enumerate(unique)}
    caption_rows = torch.tensor([row_of[c] for c in ds.captions])
    t0 = time.perf_counter()
    table = torch.cat([model.encode_prompts(unique[lo:lo + 256]) for lo in range(0, len(unique), 256)])
    table = table.to(torch.bfloat16)
    uncond = model.encode_prompts([""])
    log(f"encoded {len(unique)} captions in {time.perf_counter() - t0:.1f} s")

    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    names = {id(p): n for n, p in unet.named_parameters()}
    if start_step > 0 and (out / "optimizer.safetensors").is_file():
        _load_optimizer(optimizer, unet, out / "optimizer.safetensors")
    unet.train()
    steps = range(start_step, config.steps)
    bar = make_progress(total=config.steps, initial=start_step, desc="t2i train", unit="step",
                        disable=not progress)
    running = None
    t_start, cpu_start = time.perf_counter(), time.process_time()

    def checkpoint(step: int) -> None:
        unet.eval()
        save_model(out, pipeline, config, overwrite=overwrite, train_state={
            "step": step, "seed": config.seed, "steps": config.steps,
            "loss": running, "n_items": len(ds), "dataset": str(ds.path) if ds.path else None,
            "train_seconds": round(time.perf_counter() - t_start, 2),
            # CPU time and load make timings on a shared machine interpretable.
            "train_cpu_seconds": round(time.process_time() - cpu_start, 2),
            "threads": torch.get_num_threads(), "load_avg": list(os.getloadavg()),
        }, extra_tensors=_optimizer_tensors(optimizer, names))
        unet.train()

    channels = int(images.shape[1])
    for step in steps:
        gen = step_generator(config.seed, step)
        idx = _batch_indices(len(ds), config.batch_size, config.seed, step)
        b = idx.shape[0]
        timesteps = torch.randint(0, config.num_train_timesteps, (b,), generator=gen)
        noise = torch.randn((b, channels, h, w), generator=gen)
        drop = torch.rand(b, generator=gen) < config.caption_dropout
        if config.offset_noise > 0:
            noise = noise + config.offset_noise * torch.randn((b, channels, 1, 1), generator=gen)
        states = table[caption_rows[idx]].float()
        states[drop] = uncond[0]
        x = images[idx]
        if config.channels_last:
            x, noise = x.contiguous(memory_format=torch.channels_last), noise.contiguous(
                memory_format=torch.channels_last)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(config, step)
        with _autocast(config.precision):
            value = training_loss(model, x, states, timesteps, noise, config.min_snr_gamma).mean()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        item = float(value.detach())
        if not math.isfinite(item):
            raise CheckpointError(f"training diverged at step {step} (loss {item}); lower the learning rate.")
        running = item if running is None else 0.98 * running + 0.02 * item
        bar.set_postfix(loss=f"{running:.4f}")
        bar.update(1)
        done = step + 1
        if done % config.checkpoint_every == 0 and done < config.steps:
            checkpoint(done)
    bar.close()
    if config.channels_last:
        unet.to(memory_format=torch.contiguous_format)
    checkpoint(config.steps)
    unet.eval()
    model.path = out
    log(f"trained {config.steps - start_step} steps in {time.perf_counter() - t_start:.1f} s "
        f"({time.process_time() - cpu_start:.1f} CPU s, {torch.get_num_threads()} threads, "
        f"load {os.getloadavg()[0]:.1f}; loss {running if running is not None else float('nan'):.4f}); "
        f"saved {out}")
    return model
