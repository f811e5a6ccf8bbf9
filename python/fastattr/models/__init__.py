"""Text-to-image models behind one seam: the DiffusionModel interface and its diffusers adapter.

Names load lazily, so that importing the package does not import torch.

Example:
    >>> from fastattr.models import load_diffusion_model
    >>> model = load_diffusion_model("runs/demo/t2i")  # doctest: +SKIP
"""

from __future__ import annotations

from fastattr._lazy import lazy_exports

__all__ = ["DiffusionModel", "DiffusersModel", "PixelDiffusionPipeline", "find_kv_layers",
           "load_diffusion_model"]

_LAZY = {
    "DiffusionModel": "fastattr.models.base",
    "find_kv_layers": "fastattr.models.base",
    "DiffusersModel": "fastattr.models.diffusers_model",
    "load_diffusion_model": "fastattr.models.diffusers_model",
    "PixelDiffusionPipeline": "fastattr.models.pixel_pipeline",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, globals())
