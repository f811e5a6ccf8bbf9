"""`student train` end to end: encoders (pretrained stand-in or given), cached features, head, checkpoint."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._atomic import check_replaceable
from .._deps import require
from ..errors import InputError
from ..teacher.teacher_set import TeacherSet, load_teacher_set
from .data import Items, load_items
from .embedder import save_student
from .encoders import ImageEncoder, TextEncoder, load_image_encoder, load_text_encoder, minilm_path
from .features import image_features, text_features
from .pretrain import pretrain_image_encoder, save_image_encoder
from .train import Features, TrainConfig, train_head

torch = require("torch", feature="fastattr.student")

__all__ = ["WORLD_ENCODER", "prepare_image_encoder", "prepare_text_encoder", "compute_features", "train_student"]

# --image-encoder value that means "pretrain the small ViT stand-in on this dataset's attributes".
WORLD_ENCODER = "world"


def prepare_image_encoder(source: str, dataset_path: Any, *, cache_dir: str | Path | None,
                          pretrain_steps: int = 500, seed: int = 0, progress: bool = True) -> ImageEncoder:
    """The image encoder named by ``source``: a folder/hub id, or ``"world"`` for the pretrained stand-in.

    The stand-in is pretrained once per (dataset, steps, seed) and kept under ``cache_dir``.

    Example:
        >>> enc = prepare_image_encoder("world", "runs/world", cache_dir="runs/cache")  # doctest: +SKIP
    """
    if source != WORLD_ENCODER:
        return load_image_encoder(source)
    from ..data import open_dataset

    ds = open_dataset(dataset_path)
    if not any(ds.attributes):
        raise InputError(
            "the 'world' image encoder is pretrained on the embedded world's per-item attributes, and this "
            "dataset has none: pass --image-encoder with a transformers vision model (a folder saved with "
            "save_pretrained or a hub id), e.g. --image-encoder facebook/dinov2-small")
    key = hashlib.sha256(ds.digest().encode())
    key.update(f"{pretrain_steps}-{seed}".encode())
    folder = Path(cache_dir, f"image-encoder-{key.hexdigest()[:16]}") if cache_dir is not None else None
    if folder is not None and (folder / "config.json").is_file():
        return load_image_encoder(folder)
    encoder, metrics = pretrain_image_encoder(np.asarray(ds.images), ds.attributes, steps=pretrain_steps,
                                              seed=seed, progress=progress)
    if folder is None:
        return encoder
    save_image_encoder(encoder, folder, info=metrics)
    return load_image_encoder(folder)


def prepare_text_encoder(source: str | None, captions: Sequence[str], *, max_length: int | None = None) -> TextEncoder:
    """The text encoder (default: the shipped all-MiniLM-L6-v2) with a token length that fits ``captions``.

    Without ``max_length`` the length is the longest caption's token count plus 8, rounded up to
    a multiple of 8 (held-out prompts look like the training captions; longer ones are truncated).

    Example:
        >>> enc = prepare_text_encoder(None, ["a red square on a grey background"])  # doctest: +SKIP
    """
    encoder = load_text_encoder(source or minilm_path(), max_length=512)
    if max_length is None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(encoder.tokenizer.to_str())  # a copy: measuring must not lose the padding
        tok.no_padding()
        tok.no_truncation()
        longest = max((len(e.ids) for e in tok.encode_batch(list(captions))), default=8)
        max_length = min(encoder.max_length, int(np.ceil((longest + 8) / 8) * 8))
    encoder.set_max_length(max_length)
    return encoder


def compute_features(image_encoder: ImageEncoder, text_encoder: TextEncoder, items: Items, teacher: TeacherSet,
                     *, cache_dir: str | Path | None, progress: bool = True) -> Features:
    """Frozen features of every item and every teacher query (cached as .npy under ``cache_dir``)."""
    return Features(
        query_image=image_features(image_encoder, teacher.query_images, cache_dir=cache_dir,
                                   desc="query image features", progress=progress),
        query_text=text_features(text_encoder, teacher.captions, cache_dir=cache_dir,
                                 desc="query text features", progress=progress),
        item_image=image_features(image_encoder, items.images, cache_dir=cache_dir,
                                  desc="item image features", progress=progress),
        item_text=text_features(text_encoder, items.captions, cache_dir=cache_dir,
                                desc="item text features", progress=progress),
    )


def train_student(dataset: Any, teacher_set: str | Path, out: str | Path, *,
                  image_encoder: str = WORLD_ENCODER, text_encoder: str | None = None,
                  max_length: int | None = None, cache_dir: str | Path | None = None,
                  config: TrainConfig | None = None, pretrain_steps: int = 500,
                  progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train the student from a dataset folder and a teacher set; write the checkpoint to ``out``.

    Anything at ``out`` but a student checkpoint is refused before training unless ``overwrite``.

    Returns the training log (also stored in ``student.json`` under ``"training"``).

    Example:
        >>> log = train_student("runs/world", "runs/teacher", "runs/student")  # doctest: +SKIP
    """
    config = config or TrainConfig()
    check_replaceable(Path(out), "student.json", overwrite=overwrite, what="student checkpoint")   # before training
    started = time.perf_counter()
    items = load_items(dataset)
    teacher = load_teacher_set(teacher_set, n_items=len(items))
    if len(teacher.queries("train")) == 0:
        raise InputError(f"Teacher set {teacher_set} has no training queries; curate some with "
                         "`fastattr teacher curate`.")
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(out).parent / ".student-cache"
    img = prepare_image_encoder(image_encoder, dataset, cache_dir=cache_dir, pretrain_steps=pretrain_steps,
                                seed=config.seed, progress=progress)
    txt = prepare_text_encoder(text_encoder, list(items.captions) + teacher.captions, max_length=max_length)
    encoders_done = time.perf_counter()
    feats = compute_features(img, txt, items, teacher, cache_dir=cache_dir, progress=progress)
    features_done = time.perf_counter()
    head, log = train_head(feats, teacher.query_id, teacher.item_id, teacher.rank, teacher.score,
                           teacher.queries("train"), n_items=len(items), config=config, progress=progress)
    log.update({
        "dataset": str(Path(getattr(dataset, "path", None) or dataset).resolve()),
        "teacher_set": str(Path(teacher_set).resolve()),
        "n_items": len(items), "n_train_queries": int(len(teacher.queries("train"))),
        "n_test_queries": int(len(teacher.queries("test"))),
        "seconds_encoders": encoders_done - started, "seconds_features": features_done - encoders_done,
        "seconds_total": time.perf_counter() - started, "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    })
    save_student(out, img, txt, head, training=log, overwrite=overwrite)
    return log


def default_config(**overrides: Any) -> TrainConfig:
    """A TrainConfig with CLI overrides applied (``None`` values keep the defaults)."""
    base = asdict(TrainConfig())
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**base)
