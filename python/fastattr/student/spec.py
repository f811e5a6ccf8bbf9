"""The student embedder's contract (EmbedderSpec) and its torch-free preprocessing: numpy, Pillow, tokenizers.

EmbedderSpec holds the SDK's :class:`fastattr.preprocess.PreprocessSpec` (the one description of
the image and text preprocessing, which export and the bundle copy on) plus what only a student
checkpoint knows: its tokenizer file and its output dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import CheckpointError, InputError
from ..preprocess import RESIZE_FILTERS, PreprocessSpec, resize_normalize

__all__ = ["EmbedderSpec", "RESIZE_FILTERS", "preprocess_images", "tokenize"]

_KEYS = ("size", "resize", "mean", "std", "tokenizer", "max_length", "dim")


@dataclass(frozen=True, init=False)
class EmbedderSpec:
    """How raw inputs become the embedder's tensors: a PreprocessSpec, the tokenizer file and the output dim.

    Image path: uint8 HWC RGB -> Pillow resize to ``size`` ([H, W]) with filter ``resize``
    (skipped when the size already matches) -> float32 / 255 -> (x - mean) / std per channel
    -> CHW. Text path: ``tokenizers.Tokenizer.from_file(tokenizer)``, whose file already carries
    truncation and fixed padding to ``max_length``; ``input_ids`` and ``attention_mask`` as int64.

    The JSON form (student.json's "spec") is flat: ``size``, ``resize``, ``mean``, ``std``,
    ``tokenizer``, ``max_length``, ``dim`` and ``extra``; the constructor takes the same names.

    Attributes:
        preprocess: the image and text preprocessing, as export.json and the bundle record it.
        tokenizer: path of the fixed-length tokenizer.json (relative in student.json, absolute once loaded).
        dim: the embedder's output dimension.
        extra: free-form notes kept with the spec.

    Example:
        >>> spec = EmbedderSpec(size=[16, 16], resize="bilinear", mean=[0.5] * 3, std=[0.5] * 3,
        ...                     tokenizer="tokenizer.json", max_length=32, dim=64)
        >>> EmbedderSpec.from_dict(spec.to_dict()) == spec
        True
        >>> spec.preprocess.size
        (16, 16)
    """

    preprocess: PreprocessSpec
    tokenizer: str
    dim: int
    extra: dict[str, Any]

    def __init__(self, *, size: Sequence[int], resize: str, mean: Sequence[float], std: Sequence[float],
                 tokenizer: str, max_length: int, dim: int, extra: Mapping[str, Any] | None = None) -> None:
        try:
            preprocess = PreprocessSpec(size=tuple(size), resize=resize, mean=tuple(mean), std=tuple(std),  # type: ignore[arg-type]
                                        max_length=max_length)
        except (InputError, TypeError, ValueError) as exc:
            raise CheckpointError(f"EmbedderSpec: {exc}") from None
        if int(dim) < 1:
            raise CheckpointError(f"EmbedderSpec dim must be positive, got {dim}.")
        object.__setattr__(self, "preprocess", preprocess)
        object.__setattr__(self, "tokenizer", str(tokenizer))
        object.__setattr__(self, "dim", int(dim))
        object.__setattr__(self, "extra", dict(extra or {}))

    # Read-only views of the preprocessing, so the spec serves wherever "size, resize, mean, std,
    # max_length" are read (preprocess_images, tokenize, the frozen encoders).
    @property
    def size(self) -> tuple[int, int]:
        return self.preprocess.size

    @property
    def resize(self) -> str:
        return self.preprocess.resize

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.preprocess.std

    @property
    def max_length(self) -> int:
        return self.preprocess.max_length

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON types (student.json's "spec")."""
        return {"size": list(self.size), "resize": self.resize, "mean": list(self.mean), "std": list(self.std),
                "tokenizer": self.tokenizer, "max_length": self.max_length, "dim": self.dim,
                "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EmbedderSpec":
        """Rebuild a spec from :meth:`to_dict` output; unknown or missing keys raise CheckpointError."""
        missing = sorted(set(_KEYS) - set(data))
        unknown = sorted(set(data) - set(_KEYS) - {"extra"})
        if missing or unknown:
            raise CheckpointError(
                f"Embedder spec has missing keys {missing} / unknown keys {unknown}; "
                "re-run `fastattr student train` to write a current checkpoint."
            )
        return cls(**{key: data[key] for key in _KEYS}, extra=data.get("extra"))


def preprocess_images(images: np.ndarray, spec: Any) -> np.ndarray:
    """uint8 RGB images (N, H, W, 3) or one (H, W, 3) -> float32 (N, 3, H', W') as the spec says.

    ``spec`` is anything with ``size``, ``resize``, ``mean`` and ``std``: an :class:`EmbedderSpec`,
    a :class:`~fastattr.preprocess.PreprocessSpec` or a frozen image encoder. The resize and the
    normalization are the SDK's own (:func:`fastattr.preprocess.resize_rgb`, :func:`~fastattr.preprocess.normalize`).

    Example:
        >>> spec = EmbedderSpec(size=[4, 4], resize="bilinear", mean=[0.5] * 3, std=[0.5] * 3,
        ...                     tokenizer="t.json", max_length=8, dim=8)
        >>> float(preprocess_images(np.full((2, 4, 4, 3), 255, np.uint8), spec)[0, 0, 0, 0])
        1.0
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise InputError(
            f"Images must be uint8 RGB of shape (N, H, W, 3) or (H, W, 3); got {arr.dtype} {arr.shape}. "
            "Convert with np.asarray(PIL.Image.open(...).convert('RGB'))."
        )
    return resize_normalize(arr, spec)


def tokenize(texts: Sequence[str], spec: Any, *, tokenizer: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Captions -> (input_ids, attention_mask), both int64 (N, max_length), with the spec's tokenizer.

    ``tokenizer`` (a ``tokenizers.Tokenizer``) skips reading ``spec.tokenizer`` from disk.

    Example:
        >>> ids, mask = tokenize(["a red square"], spec)  # doctest: +SKIP
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InputError("Captions must be a sequence of str (wrap a single prompt in a list).")
    if tokenizer is None:
        tokenizer = load_tokenizer(spec.tokenizer)
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.asarray([e.ids for e in encodings], dtype=np.int64).reshape(len(encodings), -1)
    mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64).reshape(len(encodings), -1)
    if len(encodings) and ids.shape[1] != spec.max_length:
        raise CheckpointError(
            f"Tokenizer {getattr(spec, 'tokenizer', tokenizer)} produced {ids.shape[1]} tokens, spec says max_length "
            f"{spec.max_length}; the tokenizer file must carry fixed padding (re-run `fastattr student train`)."
        )
    return ids, mask


def load_tokenizer(path: str | Path) -> Any:
    """Open a ``tokenizer.json`` with the tokenizers library, with a clear error when it is absent."""
    from tokenizers import Tokenizer

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"Tokenizer file {p} does not exist; the checkpoint is incomplete.")
    return Tokenizer.from_file(str(p))
