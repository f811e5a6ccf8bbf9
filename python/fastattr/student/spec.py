"""The embedder's input contract (EmbedderSpec) and its torch-free preprocessing: numpy, Pillow, tokenizers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import CheckpointError, InputError

__all__ = ["EmbedderSpec", "RESIZE_FILTERS", "preprocess_images", "tokenize"]

# Names used in specs -> Pillow filter names (resolved lazily so this module imports without Pillow).
RESIZE_FILTERS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class EmbedderSpec:
    """How raw inputs become the embedder's tensors; JSON-serializable and shared with the SDK.

    Image path: uint8 HWC RGB -> Pillow resize to ``size`` ([H, W]) with filter ``resize``
    (skipped when the size already matches) -> float32 / 255 -> (x - mean) / std per channel
    -> CHW. Text path: ``tokenizers.Tokenizer.from_file(tokenizer)``, whose file already carries
    truncation and fixed padding to ``max_length``; ``input_ids`` and ``attention_mask`` as int64.

    Example:
        >>> spec = EmbedderSpec(size=[16, 16], resize="bilinear", mean=[0.5] * 3, std=[0.5] * 3,
        ...                     tokenizer="tokenizer.json", max_length=32, dim=64)
        >>> EmbedderSpec.from_dict(spec.to_dict()) == spec
        True
    """

    size: list[int]
    resize: str
    mean: list[float]
    std: list[float]
    tokenizer: str
    max_length: int
    dim: int
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.size) != 2 or any(int(s) < 1 for s in self.size):
            raise CheckpointError(f"EmbedderSpec.size must be [H, W] with positive ints, got {self.size!r}.")
        if self.resize not in RESIZE_FILTERS:
            raise CheckpointError(
                f"EmbedderSpec.resize is {self.resize!r}; expected one of {', '.join(RESIZE_FILTERS)}."
            )
        if len(self.mean) != 3 or len(self.std) != 3 or any(float(s) <= 0 for s in self.std):
            raise CheckpointError(
                f"EmbedderSpec mean/std must be 3 values each with std > 0, got {self.mean!r}, {self.std!r}."
            )
        if int(self.max_length) < 1 or int(self.dim) < 1:
            raise CheckpointError(
                f"EmbedderSpec max_length and dim must be positive, got {self.max_length}, {self.dim}."
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON types."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EmbedderSpec":
        """Rebuild a spec from :meth:`to_dict` output; unknown or missing keys raise CheckpointError."""
        names = {"size", "resize", "mean", "std", "tokenizer", "max_length", "dim", "extra"}
        missing = sorted(names - {"extra"} - set(data))
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise CheckpointError(
                f"Embedder spec has missing keys {missing} / unknown keys {unknown}; "
                "re-run `fastattr student train` to write a current checkpoint."
            )
        return cls(
            size=[int(s) for s in data["size"]],
            resize=str(data["resize"]),
            mean=[float(m) for m in data["mean"]],
            std=[float(s) for s in data["std"]],
            tokenizer=str(data["tokenizer"]),
            max_length=int(data["max_length"]),
            dim=int(data["dim"]),
            extra=dict(data.get("extra", {})),
        )


def preprocess_images(images: np.ndarray, spec: Any) -> np.ndarray:
    """uint8 RGB images (N, H, W, 3) or one (H, W, 3) -> float32 (N, 3, H', W') as the spec says.

    ``spec`` is an :class:`EmbedderSpec` or anything with ``size``, ``resize``, ``mean``, ``std``.

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
    height, width = int(spec.size[0]), int(spec.size[1])
    if arr.shape[1:3] != (height, width):
        from PIL import Image

        resample = getattr(Image.Resampling, spec.resize.upper())
        arr = np.stack(
            [np.asarray(Image.fromarray(img).resize((width, height), resample=resample)) for img in arr]
        )
    out = arr.astype(np.float32) / np.float32(255.0)
    out = (out - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


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
