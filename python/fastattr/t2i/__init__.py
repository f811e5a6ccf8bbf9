"""The tiny text-to-image diffusion model of the embedded world (pixel-space UNet, DDPM, DDIM).

Names load lazily so that `fastattr --help` does not import torch.

Example:
    >>> from fastattr.t2i import T2IConfig, T2IModel, loss, to_model_input
    >>> m = T2IModel.create(T2IConfig.preset("tiny"))
    >>> x = to_model_input(__import__("numpy").zeros((1, 8, 8, 3), "uint8"))
    >>> tuple(x.shape)
    (1, 3, 8, 8)
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "T2IConfig",
    "T2IModel",
    "load_model",
    "loss",
    "save_model",
    "sample_images",
    "to_model_input",
    "train",
]

_LAZY = {
    "T2IConfig": "fastattr.t2i.config",
    "T2IModel": "fastattr.t2i.model",
    "load_model": "fastattr.t2i.model",
    "loss": "fastattr.t2i.model",
    "save_model": "fastattr.t2i.model",
    "to_model_input": "fastattr.t2i.model",
    "sample_images": "fastattr.t2i.sample",
    "train": "fastattr.t2i.trainer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastattr.t2i' has no attribute {name!r}")
    attr = "ddim_sample" if name == "sample_images" else name
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
