"""The exported embedder under ONNX Runtime: the one way to open a session and to embed (image, prompt) pairs.

The SDK (``Attributor``), the bundle builder, the export parity check and the per-variant
evaluation all open their sessions with :func:`make_session` and embed with :func:`embed_pairs`,
so every vector fastattr computes from an ONNX graph sees the same session settings and the same
preprocessing (``fastattr.preprocess``). Runtime path: numpy, onnxruntime, tokenizers, Pillow; never torch.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ._progress import make_progress
from .errors import BundleError, CheckpointError, DeviceError, FastattrError, InputError
from .preprocess import ImageLike, PreprocessSpec, Tokenizer, decode_images, resize_normalize

__all__ = ["DEVICES", "EMBED_BATCH", "make_session", "session_device", "embed_pairs", "embed_items"]

DEVICES = ("auto", "cuda", "cpu")
EMBED_BATCH = 64
_CUDA = "CUDAExecutionProvider"


def make_session(
    model_path: str | os.PathLike[str],
    *,
    device: str = "cpu",
    threads: int | None = None,
    spinning: bool = True,
    error: type[FastattrError] = BundleError,
) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``model_path`` with fastattr's settings.

    Args:
        model_path: the ONNX file.
        device: "cpu"; "cuda" (DeviceError when CUDA is unavailable or onnxruntime falls back to
            CPU); or "auto" (CUDA when onnxruntime offers it, else CPU, warning if CUDA fails).
        threads: ONNX Runtime intra-op threads; None lets it choose.
        spinning: whether ONNX Runtime's idle worker threads busy-wait for the next operator. It
            speeds up a stream of forwards; after one forward the spinning threads take the cores
            that whatever runs next (the index scan of a query) needs.
        error: the FastattrError class raised when onnxruntime cannot load the file (BundleError
            for a bundle's embedder, CheckpointError for an export folder's).

    Raises:
        DeviceError: device="cuda" and no CUDA provider could be used.

    Example:
        >>> session = make_session("bundles/shapes/embedder.onnx", threads=1)  # doctest: +SKIP
        >>> session_device(session)  # doctest: +SKIP
        'cpu'
    """
    import onnxruntime as ort

    if device not in DEVICES:
        raise InputError(f"device must be one of {DEVICES}, got {device!r}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # keep ORT's own warnings off stderr; we report the provider ourselves
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    available = ort.get_available_providers()
    want_cuda = device == "cuda" or (device == "auto" and _CUDA in available)
    if device == "cuda" and _CUDA not in available:
        raise DeviceError(
            f"device='cuda' requested but this onnxruntime has no CUDA provider (has {available}). "
            "Install onnxruntime-gpu (pip install \"fastattr[gpu]\") or use device='cpu'"
        )
    providers: list[Any] = [_CUDA, "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(model_path), options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for a bad graph
        raise error(f"onnxruntime cannot load {model_path}: {exc}") from exc
    got = session.get_providers()
    if want_cuda and (not got or got[0] != _CUDA):
        message = f"CUDA was requested but onnxruntime gave {got} (no usable GPU or CUDA libraries)"
        if device == "cuda":
            raise DeviceError(message + "; use device='cpu' or fix the CUDA installation")
        # stacklevel 3: the warning names the caller of the function that asked for the session.
        warnings.warn(message + "; running on CPU", RuntimeWarning, stacklevel=3)
    return session


def session_device(session: Any) -> str:
    """The device a session really runs on: "cuda" or "cpu"."""
    return "cuda" if session.get_providers()[0] == _CUDA else "cpu"


class _NoLaps:
    """The default ``laps`` of :func:`embed_pairs`: times nothing, reads no clock."""

    __slots__ = ()

    def restart(self) -> None:
        pass

    def __call__(self, name: str) -> None:
        pass


NO_LAPS = _NoLaps()


def embed_pairs(
    session: Any,
    spec: PreprocessSpec,
    tokenizer: Tokenizer,
    images: Sequence[ImageLike],
    prompts: Sequence[str],
    *,
    batch_size: int = EMBED_BATCH,
    laps: Any = NO_LAPS,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embed (image, prompt) pairs through ``session`` in batches → float32 (N, dim), C-contiguous.

    Each batch is decoded (:func:`~fastattr.preprocess.decode_images`), resized and normalized
    (:func:`~fastattr.preprocess.resize_normalize`), tokenized and run.

    Args:
        session: from :func:`make_session`.
        spec: the embedder's preprocessing.
        tokenizer: the embedder's tokenizer (``Tokenizer.from_file(..., max_length=spec.max_length)``).
        images: anything :func:`~fastattr.preprocess.to_rgb_uint8` accepts, one per prompt.
        prompts: one str per image.
        batch_size: pairs per ONNX Runtime call.
        laps: receives ``restart()`` before each batch and ``laps(stage)`` after its "decode",
            "preprocess", "tokenize" and "forward" steps (the Attributor's per-stage timings).
        on_batch: called with the number of pairs after each batch (progress bars).

    Raises:
        InputError: mismatched counts, no pairs, or an image or prompt that cannot be used
            (errors name "image {i}" when there is more than one).

    Example:
        >>> vectors = embed_pairs(session, bundle.spec, tokenizer, ["a.png"], ["a red square"])  # doctest: +SKIP
    """
    if len(images) != len(prompts):
        raise InputError(f"got {len(images)} images and {len(prompts)} prompts; pass one prompt per image")
    if len(images) == 0:
        raise InputError("no images given; pass at least one (image, prompt) pair")
    many = len(images) > 1
    outs = []
    for start in range(0, len(images), batch_size):
        stop = start + batch_size
        laps.restart()
        rgb = decode_images(list(images[start:stop]), first=start, numbered=many)
        laps("decode")
        pixel_values = resize_normalize(rgb, spec)
        laps("preprocess")
        input_ids, attention_mask = tokenizer(list(prompts[start:stop]))
        laps("tokenize")
        feed = {"pixel_values": pixel_values, "input_ids": input_ids, "attention_mask": attention_mask}
        outs.append(session.run(None, feed)[0])
        laps("forward")
        if on_batch is not None:
            on_batch(len(rgb))
    return np.ascontiguousarray(np.concatenate(outs).astype(np.float32, copy=False))


def embed_items(
    model_path: str | os.PathLike[str],
    spec: PreprocessSpec,
    tokenizer_path: str | os.PathLike[str],
    images: Sequence[ImageLike] | np.ndarray,
    captions: Sequence[str],
    *,
    batch_size: int = EMBED_BATCH,
    threads: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Embed (image, caption) rows with an ONNX embedder file on CPU → float32 (N, D), the SDK's exact path.

    Raises:
        CheckpointError: the file does not load, or the embedder produced NaN or infinite values.

    Example:
        >>> vectors = embed_items("embedder.onnx", spec, "tokenizer.json", images, captions)  # doctest: +SKIP
    """
    session = make_session(Path(model_path), device="cpu", threads=threads, error=CheckpointError)
    tokenizer = Tokenizer.from_file(tokenizer_path, max_length=spec.max_length)
    with make_progress(total=len(images), desc="embedding items", unit="item", disable=not progress) as bar:
        vectors = embed_pairs(session, spec, tokenizer, images, captions, batch_size=batch_size, on_batch=bar.update)
    if not np.all(np.isfinite(vectors)):
        raise CheckpointError(f"{model_path} produced NaN/inf embeddings; re-export the student")
    return vectors
