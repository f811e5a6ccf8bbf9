"""The offline image-encoder stand-in: a small ViT pretrained on the world by attribute prediction."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._atomic import atomic_dir, write_json
from .._deps import require
from .._progress import make_progress
from ..errors import DatasetError
from .encoders import ImageEncoder, image_encoder_from_config, standin_vit_config
from .spec import preprocess_images

torch = require("torch", feature="fastattr.student")
nn = torch.nn

__all__ = ["attribute_targets", "pretrain_image_encoder", "save_image_encoder"]

_ABSENT = "<absent>"


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _flatten(sub, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        out[f"{prefix}.count"] = len(value)
        for i, sub in enumerate(value):
            _flatten(sub, f"{prefix}.{i}", out)
    elif isinstance(value, (str, bool, int)) or value is None:
        out[prefix] = value
    elif isinstance(value, float):
        out[prefix] = round(value, 3)


def attribute_targets(attributes: Sequence[Mapping[str, Any]], *, max_classes: int = 64) -> dict[str, np.ndarray]:
    """Class-index targets per flattened attribute (``shapes.0.colour``, ``background``, ...).

    Nested dicts and lists are flattened with dotted keys; an attribute an item lacks becomes its
    own class; attributes with one value or more than ``max_classes`` values are dropped.

    Example:
        >>> t = attribute_targets([{"bg": "grey"}, {"bg": "black"}, {"bg": "grey"}])
        >>> t["bg"].tolist()
        [1, 0, 1]
    """
    flat = []
    for attrs in attributes:
        row: dict[str, Any] = {}
        _flatten(attrs, "", row)
        flat.append(row)
    keys = sorted({k for row in flat for k in row})
    targets: dict[str, np.ndarray] = {}
    for key in keys:
        values = [json.dumps(row.get(key, _ABSENT)) for row in flat]
        classes = sorted(set(values))
        if 2 <= len(classes) <= max_classes:
            index = {c: i for i, c in enumerate(classes)}
            targets[key] = np.asarray([index[v] for v in values], np.int64)
    return targets


def pretrain_image_encoder(images: np.ndarray, attributes: Sequence[Mapping[str, Any]], *,
                           steps: int = 500, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                           hidden: int = 64, layers: int = 3, progress: bool = True) -> tuple[ImageEncoder, dict[str, Any]]:
    """Train a small ViT to predict each stored attribute from the image; return it frozen + metrics.

    The objective (attribute classification) is unrelated to the teacher's (loss change under
    unlearning), so the encoder's untuned features are a fair baseline, as DINO's are for photos.
    10 % of items are held out to report per-attribute accuracy.

    Example:
        >>> enc, metrics = pretrain_image_encoder(ds.images, ds.attributes, steps=200)  # doctest: +SKIP
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != images.shape[2] or len(images) != len(attributes):
        raise DatasetError(
            f"Pretraining needs square uint8 images (N, S, S, 3) and one attribute dict per image; "
            f"got images {images.shape} and {len(attributes)} attribute rows."
        )
    targets = attribute_targets(attributes)
    if not targets:
        raise DatasetError("The dataset's attributes hold nothing to predict (every attribute has one value); "
                           "give a pretrained image encoder with --image-encoder instead.")
    encoder = image_encoder_from_config(standin_vit_config(images.shape[1], hidden=hidden, layers=layers),
                                        seed=seed, source="world-attribute-pretraining")
    names = sorted(targets)
    heads = nn.ModuleDict({n.replace(".", "__"): nn.Linear(encoder.dim, int(targets[n].max()) + 1) for n in names})
    model = encoder.model.train().requires_grad_(True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    n_val = max(1, len(images) // 10) if len(images) >= 20 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    pixels = torch.from_numpy(preprocess_images(images, encoder))
    y = {n: torch.from_numpy(targets[n]) for n in names}
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)
    # Linear warm-up then cosine decay: short runs still end with small, stable updates.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(s, steps) / max(steps, 1))))
    start = time.perf_counter()
    loss_value = float("nan")
    for _ in make_progress(range(steps), desc="pretrain image encoder", unit="step", disable=not progress,
                           leave=False):
        batch = torch.from_numpy(rng.choice(train_idx, size=min(batch_size, len(train_idx)), replace=False))
        cls = model(pixel_values=pixels[batch]).last_hidden_state[:, 0]
        loss = sum(nn.functional.cross_entropy(heads[n.replace(".", "__")](cls), y[n][batch]) for n in names)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_value = float(loss.detach()) / len(names)
    model.eval().requires_grad_(False)
    accuracy: dict[str, float] = {}
    if n_val:
        with torch.inference_mode():
            cls = model(pixel_values=pixels[torch.from_numpy(val_idx)]).last_hidden_state[:, 0]
            for n in names:
                pred = heads[n.replace(".", "__")](cls).argmax(-1)
                accuracy[n] = float((pred == y[n][torch.from_numpy(val_idx)]).float().mean())
    metrics = {"objective": "attribute classification", "steps": steps, "batch_size": batch_size,
               "seed": seed, "final_train_loss": loss_value, "val_accuracy": accuracy,
               "seconds": time.perf_counter() - start, "n_items": len(images)}
    return encoder, metrics


def save_image_encoder(encoder: ImageEncoder, folder: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Save an image encoder as a transformers folder (safetensors + preprocessing) that ``load_image_encoder`` reads.

    Example:
        >>> save_image_encoder(enc, "runs/image_encoder")  # doctest: +SKIP
    """
    folder = Path(folder)
    with atomic_dir(folder, marker="config.json", what="image encoder folder") as tmp:
        encoder.model.save_pretrained(tmp, safe_serialization=True)
        write_json(tmp / "preprocessor_config.json",
                   {"image_mean": encoder.mean, "image_std": encoder.std, "resample": 2,
                    "size": {"height": encoder.size[0], "width": encoder.size[1]}})
        if info is not None:
            write_json(tmp / "fastattr_pretraining.json", info)
    return folder
