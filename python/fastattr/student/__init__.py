"""The student: frozen encoders, a learning-to-rank distillation head, and its evaluation (DESIGN §3-4).

Names load lazily so that ``import fastattr.student`` does not import torch until one is used.

Example:
    >>> from fastattr.student import EmbedderSpec, cutoffs
    >>> cutoffs(2500)
    [11, 21, 85]
"""

from __future__ import annotations

from fastattr._lazy import lazy_exports

__all__ = [
    "EmbedderSpec",
    "preprocess_images",
    "tokenize",
    "load_embedder",
    "load_student",
    "save_student",
    "train_student",
    "evaluate_student",
    "TrainConfig",
    "train_head",
    "average_precision",
    "cutoffs",
    "map_at",
    "mean_se",
    "load_image_encoder",
    "load_text_encoder",
    "pretrain_image_encoder",
]

_LAZY = {
    "EmbedderSpec": ".spec", "preprocess_images": ".spec", "tokenize": ".spec",
    "load_embedder": ".embedder", "load_student": ".embedder", "save_student": ".embedder",
    "train_student": ".pipeline", "evaluate_student": ".evaluate", "TrainConfig": ".train", "train_head": ".train",
    "average_precision": ".metrics", "cutoffs": ".metrics", "map_at": ".metrics", "mean_se": ".metrics",
    "load_image_encoder": ".encoders", "load_text_encoder": ".encoders", "pretrain_image_encoder": ".pretrain",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, globals())
