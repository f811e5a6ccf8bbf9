"""The embedded world's text-to-image model: a pixel-space diffusers pipeline, its config and trainer.

Names load lazily so that `fastattr --help` does not import torch. A trained folder is a
diffusers pipeline folder: load it with :func:`fastattr.models.load_diffusion_model`.

Example:
    >>> from fastattr.t2i import T2IConfig
    >>> T2IConfig.preset("tiny").image_size
    16
"""

from __future__ import annotations

from fastattr._lazy import lazy_exports

__all__ = ["T2IConfig", "build_pipeline", "load_model", "save_model", "train"]

_LAZY = {
    "T2IConfig": "fastattr.t2i.config",
    "build_pipeline": "fastattr.t2i.model",
    "load_model": "fastattr.t2i.model",
    "save_model": "fastattr.t2i.model",
    "train": "fastattr.t2i.trainer",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, globals())
