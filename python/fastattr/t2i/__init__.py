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

from fastattr._lazy import lazy_exports

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
    "sample_images": "fastattr.t2i.sample:ddim_sample",
    "train": "fastattr.t2i.trainer",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, globals())
