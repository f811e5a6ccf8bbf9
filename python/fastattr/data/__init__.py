"""Datasets: the Dataset type, the layouts it is read from, the image policy and the decode cache.

Names load lazily, so that importing the package imports neither Pillow nor torch.

Example:
    >>> from fastattr.data import load_dataset
    >>> ds = load_dataset("data/my-imagefolder", image_size=256)  # doctest: +SKIP
"""

from __future__ import annotations

from fastattr._lazy import lazy_exports

__all__ = ["Dataset", "IMAGE_POLICY", "LAYOUTS", "cached_rows", "load_dataset", "open_dataset",
           "to_rgb_square", "write_dataset"]

_LAZY = {
    "Dataset": "fastattr.data.dataset",
    "write_dataset": "fastattr.data.dataset",
    "load_dataset": "fastattr.data.layouts",
    "open_dataset": "fastattr.data.layouts",
    "LAYOUTS": "fastattr.data.layouts",
    "IMAGE_POLICY": "fastattr.data.images",
    "to_rgb_square": "fastattr.data.images",
    "cached_rows": "fastattr.data.cache",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, globals())
