"""Image decoding and tokenization for the embedder, with numpy, Pillow and tokenizers only (no torch).

:class:`PreprocessSpec` is the one description of the embedder's inputs: the student writes it
(inside ``fastattr.student.spec.EmbedderSpec``), export copies it into export.json, the bundle
into manifest.json, and the SDK reads it back. Training (``fastattr.student.spec.preprocess_images``)
and serving (:func:`preprocess_images`) resize and normalize with the same functions of this
module (:func:`resize_rgb`, :func:`normalize`), so an image reaches the embedder identically in both.

The image rules, in order:

1. Decode: a PIL image, a numpy array, a path or encoded bytes (PNG, JPEG, ...). The EXIF
   orientation of decoded files is applied. Only the first frame of an animation is used.
2. To 8-bit RGB: grayscale is replicated to three channels; an alpha channel is dropped
   (as ``PIL.Image.convert("RGB")`` does); 16-bit values are scaled by 255/65535 and rounded;
   float arrays must lie in [0, 1] and are scaled by 255 and rounded.
3. Resize to ``spec.size`` with Pillow's filter ``spec.resize`` (skipped when already that size).
4. ``(x / 255 - mean) / std`` per channel, float32, laid out (3, H, W).

Prompts are tokenized with the bundle's ``tokenizer.json`` and truncated to ``max_length`` tokens
(special tokens included), as the student does in training (``fastattr.student.spec.tokenize``).
Training pads every prompt to ``max_length``; :class:`Tokenizer` pads to ``max_length`` too, then
drops the columns that are padding in every row, so a batch is as wide as its longest prompt. The
ids and mask it keeps are the training ones, and the masked encoders give the same vectors.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

from .errors import InputError

__all__ = [
    "ImageLike",
    "PreprocessSpec",
    "RESIZE_FILTERS",
    "Tokenizer",
    "to_rgb_uint8",
    "resize_rgb",
    "normalize",
    "decode_images",
    "resize_normalize",
    "preprocess_images",
]

ImageLike = Union["PIL.Image.Image", np.ndarray, str, os.PathLike, bytes, bytearray, memoryview]  # noqa: F821

# Pillow filters a spec may name.
RESIZE_FILTERS = ("nearest", "bilinear", "bicubic")


MAX_SIDE = 4096     # pixels per side of the embedder's input (ViT-g at 518 is far below)
MAX_TOKENS = 8192   # tokens of a prompt
MAX_DECODED_PIXELS = 8192 * 8192   # an encoded image larger than this is refused before decoding


@dataclass(frozen=True)
class PreprocessSpec:
    """How raw images and prompts become embedder inputs; stored in export.json and the bundle manifest.

    The tokenizer file itself is not part of the spec: a bundle names it by role ("tokenizer"),
    an export folder always holds ``tokenizer.json``, a student checkpoint records its path in
    ``EmbedderSpec.tokenizer``.

    Attributes:
        size: (height, width) the embedder expects.
        resize: Pillow filter used when an image has another size: "bilinear", "bicubic" or "nearest".
        mean: per-channel mean subtracted after scaling to [0, 1].
        std: per-channel standard deviation divided by.
        max_length: longest token sequence (special tokens included); longer prompts are truncated.

    Example:
        >>> spec = PreprocessSpec(size=(32, 32))
        >>> PreprocessSpec.from_dict(spec.to_dict()) == spec
        True
    """

    size: tuple[int, int]
    resize: str = "bilinear"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    max_length: int = 64

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size)
        # Bounded: a manifest is read from disk, and its size is what the first query allocates.
        if len(size) != 2 or min(size) <= 0 or max(size) > MAX_SIDE:
            raise InputError(f"preprocessing size must be two ints in 1..{MAX_SIDE} (H, W), got {self.size!r}")
        if self.resize not in RESIZE_FILTERS:
            raise InputError(f"preprocessing resize is {self.resize!r}; it must be one of {', '.join(RESIZE_FILTERS)}")
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise InputError(f"preprocessing mean/std must be 3 values with std > 0, got {mean}, {std}")
        if not 2 <= int(self.max_length) <= MAX_TOKENS:
            raise InputError(f"max_length must be 2..{MAX_TOKENS} tokens, got {self.max_length}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "max_length", int(self.max_length))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written into export.json and manifests ("preprocessing")."""
        return {
            "image": {"size": list(self.size), "resize": self.resize, "mean": list(self.mean), "std": list(self.std)},
            "text": {"max_length": self.max_length},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessSpec":
        """Read the JSON form (see :meth:`to_dict`); raises InputError when a field is missing.

        Files written before the spec lost its tokenizer field also hold ``text.tokenizer``
        (always "tokenizer.json"); it is ignored.
        """
        try:
            image, text = data["image"], data["text"]
            return cls(
                size=tuple(image["size"]),  # type: ignore[arg-type]
                resize=str(image["resize"]),
                mean=tuple(image["mean"]),  # type: ignore[arg-type]
                std=tuple(image["std"]),  # type: ignore[arg-type]
                max_length=int(text["max_length"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"preprocessing section is incomplete or malformed ({exc!r}): {dict(data)!r}") from exc


# ----------------------------------------------------------------------------- images


def _pil():
    from PIL import Image, ImageOps

    return Image, ImageOps


def _decode(data: bytes, where: str) -> "Any":
    Image, ImageOps = _pil()
    from PIL import UnidentifiedImageError

    def too_large(pixels: str) -> InputError:
        return InputError(f"{where} is {pixels} pixels, more than the {MAX_DECODED_PIXELS:,} fastattr decodes; "
                          "downscale it first (the embedder sees it resized anyway).")

    try:
        img = Image.open(io.BytesIO(data))
        # Only the header is read so far: refuse a huge image before it costs gigabytes to decode
        # (PIL itself only warns below 179 Mpx).
        if img.width * img.height > MAX_DECODED_PIXELS:
            raise too_large(f"{img.width}x{img.height}")
        img.load()
        # Photos carry their rotation in EXIF; apply it so the pixels are as a viewer shows them.
        return ImageOps.exif_transpose(img)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise too_large("over 179 million") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{where} is not a decodable image ({exc}). Pass a PNG/JPEG file, bytes, a PIL image or an array.") from exc


def _array_to_rgb(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"{where} has shape {arr.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{where} is empty ({arr.shape[0]}x{arr.shape[1]} pixels)")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = np.rint(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{where} contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(f"{where} is a float image with values in [{lo:g}, {hi:g}]; float images must lie in [0, 1]")
        out = np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise InputError(f"{where} has dtype {arr.dtype}; expected uint8, uint16 or float in [0, 1]")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    elif out.shape[2] == 4:
        out = out[:, :, :3]  # alpha dropped, as PIL's convert("RGB") does
    return np.ascontiguousarray(out)


def _pil_to_rgb(img: Any, where: str) -> np.ndarray:
    if img.width == 0 or img.height == 0:
        raise InputError(f"{where} is empty ({img.width}x{img.height} pixels)")
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return _array_to_rgb(np.asarray(img).astype(np.uint16), where)
    if mode == "I":
        arr = np.asarray(img)
        if arr.min() < 0 or arr.max() > 65535:
            raise InputError(f"{where} is a 32-bit integer image with values outside [0, 65535]")
        return _array_to_rgb(arr.astype(np.uint16), where)
    if mode == "F":
        return _array_to_rgb(np.asarray(img, dtype=np.float32), where)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def to_rgb_uint8(image: ImageLike, *, where: str = "image") -> np.ndarray:
    """Decode any supported image input to an (H, W, 3) uint8 RGB array.

    Raises:
        InputError: the input is not an image, is empty, or has an unsupported type or range.

    Example:
        >>> to_rgb_uint8(np.zeros((4, 5), np.uint8)).shape
        (4, 5, 3)
    """
    Image, _ = _pil()
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, where)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, where)
    if isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) == 0:
            raise InputError(f"{where} is empty bytes; pass encoded image bytes (PNG, JPEG, ...)")
        return _pil_to_rgb(_decode(bytes(image), where), where)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"{where}: no image file at {str(path)!r}")
        return _pil_to_rgb(_decode(path.read_bytes(), f"{where} {str(path)!r}"), where)
    raise InputError(
        f"{where} has type {type(image).__name__}; pass a PIL image, a numpy array, a path or encoded bytes"
    )


def resize_rgb(rgb: np.ndarray, size: tuple[int, int], resize: str) -> np.ndarray:
    """Resize an (H, W, 3) uint8 array to ``size`` = (H, W) with a Pillow filter; identity when equal.

    Example:
        >>> resize_rgb(np.zeros((8, 8, 3), np.uint8), (4, 4), "bilinear").shape
        (4, 4, 3)
    """
    height, width = size
    if rgb.shape[0] == height and rgb.shape[1] == width:
        return rgb
    Image, _ = _pil()
    filters = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
               "bicubic": Image.Resampling.BICUBIC}
    return np.asarray(Image.fromarray(rgb, "RGB").resize((width, height), filters[resize]), dtype=np.uint8)


def normalize(rgb_batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float32 ``(x / 255 - mean) / std``.

    Example:
        >>> float(normalize(np.full((1, 2, 2, 3), 255, np.uint8), (0.5,) * 3, (0.5,) * 3)[0, 0, 0, 0])
        1.0
    """
    x = rgb_batch.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess_images(images: Sequence[ImageLike] | np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Turn a batch of images (or a uint8 (B, H, W, 3) array) into embedder pixel values.

    Example:
        >>> spec = PreprocessSpec(size=(4, 4))
        >>> preprocess_images(np.zeros((2, 8, 8, 3), np.uint8), spec).shape
        (2, 3, 4, 4)
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        items: Sequence[Any] = list(images)
    else:
        items = list(images)
    if not items:
        raise InputError("no images given; pass at least one")
    return resize_normalize(decode_images(items), spec)


def decode_images(images: Sequence[ImageLike], *, first: int = 0, numbered: bool | None = None) -> list[np.ndarray]:
    """Step 1 of :func:`preprocess_images`: every image as RGB uint8 (H, W, 3).

    Errors name "image {first + i}" (``numbered``, default: more than one image) or "image".

    Example:
        >>> decode_images([np.zeros((2, 2), np.uint8)])[0].shape
        (2, 2, 3)
    """
    numbered = len(images) > 1 if numbered is None else numbered
    return [to_rgb_uint8(img, where=f"image {first + i}" if numbered else "image") for i, img in enumerate(images)]


def resize_normalize(rgb: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Step 2 of :func:`preprocess_images`: resize decoded images and normalize them into (B, 3, H, W).

    Example:
        >>> resize_normalize([np.zeros((8, 8, 3), np.uint8)], PreprocessSpec(size=(4, 4))).shape
        (1, 3, 4, 4)
    """
    size = (int(spec.size[0]), int(spec.size[1]))
    if isinstance(rgb, np.ndarray) and rgb.ndim == 4 and rgb.shape[1:3] == size:
        return normalize(rgb, spec.mean, spec.std)   # a batch already at size: no per-image copy
    return normalize(np.stack([resize_rgb(x, size, spec.resize) for x in rgb]), spec.mean, spec.std)


# ----------------------------------------------------------------------------- text


class Tokenizer:
    """A ``tokenizers`` tokenizer that truncates prompts to ``max_length`` tokens and pads a batch to its longest.

    Thread-safe: the truncation and padding settings are fixed at construction; encoding
    afterwards only reads them.

    Example:
        >>> tok = Tokenizer.from_file("tokenizer.json", max_length=16)  # doctest: +SKIP
        >>> ids, mask = tok(["a red square"])  # doctest: +SKIP
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self._tok = tokenizer
        self.max_length = int(max_length)
        pad_id, pad_token = 0, "[PAD]"
        if tokenizer.padding:
            pad_id, pad_token = tokenizer.padding["pad_id"], tokenizer.padding["pad_token"]
        else:
            for candidate in ("[PAD]", "<pad>"):
                if tokenizer.token_to_id(candidate) is not None:
                    pad_id, pad_token = tokenizer.token_to_id(candidate), candidate
                    break
        self.pad_id = int(pad_id)
        tokenizer.enable_truncation(self.max_length)
        # Pad to max_length as training does (a tokenizer.json may carry other padding settings);
        # __call__ then trims the columns that are padding in every row.
        tokenizer.enable_padding(pad_id=self.pad_id, pad_token=pad_token, length=self.max_length)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, max_length: int) -> "Tokenizer":
        """Load a ``tokenizer.json``; raises InputError when the file is missing or unreadable."""
        from tokenizers import Tokenizer as _Tok

        try:
            return cls(_Tok.from_file(str(path)), max_length)
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise InputError(f"cannot load tokenizer {str(path)!r}: {exc}") from exc

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize prompts → (input_ids int64 (B, L), attention_mask int64 (B, L)), L = longest prompt.

        Raises:
            InputError: a prompt is not a string or is empty/whitespace only.
        """
        texts = list(texts)
        if not texts:
            raise InputError("no prompts given; pass at least one")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"prompt {i} has type {type(text).__name__}; pass a str")
            if not text.strip():
                raise InputError(f"prompt {i} is empty; pass the prompt that generated the image")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:   # a lone surrogate: the tokenizer would raise TypeError
                raise InputError(f"prompt {i} is not valid Unicode text ({exc.reason} at position {exc.start}); "
                                 "decode it with errors='replace' first") from None
        encodings = self._tok.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        # Drop the columns that are padding in every row: the encoders mask padding out of
        # attention and pooling, so the vectors do not change (the demo's embedder gave bit-equal
        # output), while a 13-token prompt padded to 48 cost 2.4x the forward time.
        longest = max(int(mask.sum(axis=1).max()), 1)
        return np.ascontiguousarray(ids[:, :longest]), np.ascontiguousarray(mask[:, :longest])

    def is_truncated(self, text: str) -> bool:
        """Whether ``text`` is longer than ``max_length`` tokens (and so gets truncated)."""
        return bool(self._tok.encode(text).overflowing)
