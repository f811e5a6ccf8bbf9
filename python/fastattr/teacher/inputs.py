"""Model-space inputs and text states of a dataset, computed once per (model, dataset) and memory-mapped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..data.cache import cached_rows, content_digest
from ..errors import DatasetError

if TYPE_CHECKING:
    from ..models import DiffusionModel

__all__ = ["dataset_inputs", "encode_in_batches"]


def encode_in_batches(model: "DiffusionModel", prompts: Sequence[str], lo: int, hi: int) -> np.ndarray:
    """Text states of ``prompts[lo:hi]`` as float32 numpy."""
    return model.encode_prompts(list(prompts[lo:hi])).float().numpy()


def dataset_inputs(model: "DiffusionModel", dataset: Any, cache_dir: str | os.PathLike[str], *,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """(model-space inputs (N, C, h, w), text states (N, L, D), digest) of a dataset, cached on disk.

    Pixel models cache [-1, 1] pixels, latent models the VAE posterior mean × scaling factor
    (DESIGN.md §8), so no query or Fisher pass encodes an item twice. The cache is keyed by the
    model's and the dataset's digests; images must already be at the model's resolution.

    Example:
        >>> x, c, key = dataset_inputs(model, ds, "runs/teacher/work")  # doctest: +SKIP
    """
    size = tuple(int(s) for s in dataset.images.shape[1:3])
    if size != (model.resolution, model.resolution):
        raise DatasetError(
            f"the dataset's images are {size[0]}×{size[1]} but the model takes "
            f"{model.resolution}×{model.resolution}; load the dataset with image_size={model.resolution}, "
            "or pass its folder: the teacher loads folders at the model's resolution")
    data_key = dataset.digest()
    key = content_digest(model.digest(), ":", data_key)
    root = Path(cache_dir)
    n = len(dataset)
    images = dataset.images
    x = cached_rows(root / f"item_x-{key}.npy", key, tuple(model.model_space_shape),
                    lambda lo, hi: model.to_model_space(np.asarray(images[lo:hi])).float().numpy(),
                    n=n, desc="model-space inputs" if model.latent else "", progress=progress)
    captions = list(dataset.captions)
    first = encode_in_batches(model, captions, 0, 1)
    states = cached_rows(root / f"item_text-{key}.npy", key, tuple(first.shape[1:]),
                         lambda lo, hi: encode_in_batches(model, captions, lo, hi), n=n, batch=256,
                         desc="caption text states", progress=progress)
    return x, states, key
