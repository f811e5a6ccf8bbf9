"""The one image policy: any decoded image (any mode, size, orientation) to uint8 RGB at the model's size."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["IMAGE_POLICY", "POLICY_VERSION", "to_rgb_square"]

POLICY_VERSION = 1
IMAGE_POLICY = (
    "EXIF orientation applied; converted to 8-bit RGB (transparency composited on white, 16-bit and "
    "32-bit integer images scaled from their full range, palette and CMYK expanded); then, when a size "
    "is given, the shorter side resized to it with bicubic filtering and the longer side centre-cropped."
)

# Modes whose samples run beyond 8 bits; Pillow's convert("RGB") would clip them at 255.
_WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def _to_rgb(img: Any) -> Any:
    from PIL import Image

    if img.mode in _WIDE_MODES or img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        # PNG 16-bit greys open as "I" on some Pillow versions: treat values above 255 as 16-bit.
        top = _WIDE_MODES.get(img.mode, 65535.0 if values.max(initial=0) > 255 else 255.0)
        grey = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def to_rgb_square(img: Any, size: int | None) -> np.ndarray:
    """A PIL image to uint8 (H, W, 3) under :data:`IMAGE_POLICY`; (size, size, 3) when ``size`` is given.

    Example:
        >>> from PIL import Image
        >>> to_rgb_square(Image.new("LA", (30, 20), (0, 0)), 8).shape
        (8, 8, 3)
        >>> int(to_rgb_square(Image.new("LA", (4, 4), (0, 0)), None)[0, 0, 0])  # transparent -> white
        255
    """
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    img = _to_rgb(img)
    if size is not None:
        size = int(size)
        w, h = img.size
        scale = size / min(w, h)
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        if new != (w, h):
            img = img.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)
