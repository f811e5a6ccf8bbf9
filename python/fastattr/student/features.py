"""Frozen features, computed once in batches with a progress bar and cached as .npy files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._atomic import save_npy
from .._deps import require
from .._progress import make_progress
from .spec import preprocess_images, tokenize

torch = require("torch", feature="fastattr.student")

__all__ = ["encoder_fingerprint", "image_features", "text_features"]


def encoder_fingerprint(encoder: Any) -> str:
    """SHA-256 over an encoder's description and weights: changes whenever its features could.

    Example:
        >>> encoder_fingerprint(enc)[:8]  # doctest: +SKIP
        '3fa2c1d0'
    """
    cached = getattr(encoder, "_fastattr_fingerprint", None)
    if cached is not None:
        return cached
    h = hashlib.sha256(json.dumps(encoder.describe(), sort_keys=True).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    tok = getattr(encoder, "tokenizer", None)
    if tok is not None:
        h.update(tok.to_str().encode())
    encoder._fastattr_fingerprint = h.hexdigest()
    return encoder._fastattr_fingerprint


def _cached(cache_dir: str | Path | None, kind: str, key: str, compute: Any) -> np.ndarray:
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{kind}-{key[:24]}.npy"
    if path.is_file():
        arr = np.load(path, allow_pickle=False)
        if arr.dtype == np.float32 and arr.ndim == 2:
            return arr
    arr = compute()
    save_npy(path, arr)
    return arr


def image_features(encoder: Any, images: np.ndarray, *, batch_size: int = 256,
                   cache_dir: str | Path | None = None, desc: str = "image features",
                   progress: bool = True) -> np.ndarray:
    """Encode uint8 images (N, H, W, 3) with a frozen image encoder -> float32 (N, D).

    Example:
        >>> feats = image_features(enc, dataset.images, cache_dir="runs/cache")  # doctest: +SKIP
    """
    def compute() -> np.ndarray:
        out = np.empty((len(images), encoder.dim), np.float32)
        with torch.inference_mode(), make_progress(total=len(images), desc=desc, unit="item",
                                                      disable=not progress, leave=False) as bar:
            for start in range(0, len(images), batch_size):
                chunk = preprocess_images(np.asarray(images[start:start + batch_size]), encoder)
                out[start:start + len(chunk)] = encoder(torch.from_numpy(chunk)).float().numpy()
                bar.update(len(chunk))
        return out

    key = hashlib.sha256(encoder_fingerprint(encoder).encode())
    key.update(str(np.asarray(images).shape).encode())
    key.update(np.ascontiguousarray(images).tobytes())
    return _cached(cache_dir, "image", key.hexdigest(), compute)


def text_features(encoder: Any, captions: Sequence[str], *, batch_size: int = 256,
                  cache_dir: str | Path | None = None, desc: str = "text features",
                  progress: bool = True) -> np.ndarray:
    """Encode captions with a frozen text encoder -> float32 (N, D).

    Example:
        >>> feats = text_features(enc, dataset.captions, cache_dir="runs/cache")  # doctest: +SKIP
    """
    captions = list(captions)

    def compute() -> np.ndarray:
        out = np.empty((len(captions), encoder.dim), np.float32)
        with torch.inference_mode(), make_progress(total=len(captions), desc=desc, unit="item",
                                                      disable=not progress, leave=False) as bar:
            for start in range(0, len(captions), batch_size):
                ids, mask = tokenize(captions[start:start + batch_size], encoder, tokenizer=encoder.tokenizer)
                # Trim the shared padding: mean pooling ignores padded positions, so the result is
                # the same and the encoder runs on fewer tokens.
                width = max(int(mask.sum(1).max()), 1)
                feats = encoder(torch.from_numpy(ids[:, :width]), torch.from_numpy(mask[:, :width]))
                out[start:start + len(ids)] = feats.float().numpy()
                bar.update(len(ids))
        return out

    key = hashlib.sha256(encoder_fingerprint(encoder).encode())
    key.update(json.dumps(captions).encode())
    return _cached(cache_dir, "text", key.hexdigest(), compute)
