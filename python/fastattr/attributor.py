"""Attributor: load a bundle, embed (image, prompt) with ONNX Runtime, search the native index.

Runtime path only: numpy, onnxruntime, tokenizers, Pillow and fastattr.index; never torch.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .bundle import Bundle, Items, open_bundle
from .errors import BundleError, DeviceError, InputError
from .preprocess import ImageLike, Tokenizer, decode_images, resize_normalize
from .results import Attribution

__all__ = ["Attributor", "STAGES"]

_DEVICES = ("auto", "cuda", "cpu")
_VARIANTS = {"fp32": "embedder", "fp16": "embedder_fp16", "int8": "embedder_int8"}
_EMBED_BATCH = 64
# The stages a ``timings`` dict receives, in the order a query runs them; "total" is added beside them.
STAGES = ("decode", "preprocess", "tokenize", "forward", "search", "assemble")


class _Laps:
    """Accumulates seconds per stage into a caller's mapping; only built when timings were asked for."""

    __slots__ = ("out", "last")

    def __init__(self, out: MutableMapping[str, float]) -> None:
        self.out = out
        for name in STAGES:
            out[name] = 0.0
        self.last = time.perf_counter()

    def restart(self) -> None:
        self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.out[name] += now - self.last
        self.last = now


class _NoLaps:
    """Stands in for :class:`_Laps` when no timings were asked for: no clock is read."""

    __slots__ = ()

    def restart(self) -> None:
        pass

    def __call__(self, name: str) -> None:
        pass


_NO_LAPS = _NoLaps()


def _check_timings(timings: Any) -> None:
    if timings is not None and not isinstance(timings, MutableMapping):
        raise InputError(
            f"timings must be None or a dict (any MutableMapping) to fill with seconds per stage, "
            f"got {type(timings).__name__}"
        )


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"k must be an int, got {type(k).__name__}")
    if k <= 0:
        raise InputError(f"k must be at least 1, got {k}")
    return int(k)


def _make_session(model_path: Path, device: str, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # keep ORT's own warnings off stderr; we report the provider ourselves
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    available = ort.get_available_providers()
    want_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise DeviceError(
            f"device='cuda' requested but this onnxruntime has no CUDA provider (has {available}). "
            "Install onnxruntime-gpu (pip install \"fastattr[gpu]\") or use device='cpu'"
        )
    providers: list[Any] = ["CPUExecutionProvider"]
    if want_cuda:
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(model_path), options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for a bad graph
        raise BundleError(f"onnxruntime cannot load {model_path}: {exc}") from exc
    got = session.get_providers()
    if want_cuda and (not got or got[0] != "CUDAExecutionProvider"):
        message = f"CUDA was requested but onnxruntime gave {got} (no usable GPU or CUDA libraries)"
        if device == "cuda":
            raise DeviceError(message + "; use device='cpu' or fix the CUDA installation")
        warnings.warn(message + "; running on CPU", RuntimeWarning, stacklevel=3)
    return session


class Attributor:
    """Fast data attribution: which training items most influenced a generated image.

    Thread-safe: one instance may serve concurrent ``query`` calls (the session, tokenizer and
    index are only read after ``load``).

    Example:
        >>> from fastattr import Attributor
        >>> attributor = Attributor.load("bundles/shapes", device="auto")  # doctest: +SKIP
        >>> for hit in attributor.query("generated.png", "a red square on grey", k=5):  # doctest: +SKIP
        ...     print(hit.rank, hit.item_id, f"{hit.score:.3f}", hit.caption)
    """

    #: The per-stage keys a ``timings`` dict receives (plus "total"), in the order a query runs them.
    STAGES: tuple[str, ...] = STAGES

    def __init__(self, bundle: Bundle, session: Any, index: Any, items: Items, threads: int | None) -> None:
        self.bundle = bundle
        self._session = session
        self._index = index
        self._items = items
        self._threads = threads
        self._tokenizer = Tokenizer.from_file(bundle.file("tokenizer"), max_length=bundle.spec.max_length)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str = "auto",
        threads: int | None = None,
        verify: str = "full",
        precision: str = "fp32",
    ) -> "Attributor":
        """Open a bundle and prepare the embedder session and the index.

        Args:
            path: bundle folder (from ``fastattr index build``).
            device: "auto" (CUDA when onnxruntime offers it, else CPU, warning if CUDA fails),
                "cuda" (DeviceError if unavailable) or "cpu".
            threads: threads for ONNX Runtime and the index scan; None lets each choose.
            verify: "full" (SHA-256 of every file) or "sizes" (sizes only; faster for big indexes).
            precision: "fp32", or "fp16"/"int8" to use that variant when the bundle has it.

        Raises:
            BundleError: the bundle is missing, altered, of an unknown version or inconsistent.
            DeviceError: device="cuda" and no CUDA provider could be used.
        """
        if device not in _DEVICES:
            raise InputError(f"device must be one of {_DEVICES}, got {device!r}")
        if precision not in _VARIANTS:
            raise InputError(f"precision must be one of {sorted(_VARIANTS)}, got {precision!r}")
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise InputError(f"threads must be None or at least 1, got {threads!r}")
        bundle = open_bundle(path, verify=verify)
        if not bundle.has(_VARIANTS[precision]):
            raise BundleError(f"bundle {bundle.root} has no {precision} embedder; build it with `fastattr export --{precision}`")
        session = _make_session(bundle.file(_VARIANTS[precision]), device, threads)
        from . import index as index_module

        index = index_module.open(str(bundle.file("index")))
        if index.dim != bundle.dim or len(index) != bundle.n_items:
            raise BundleError(
                f"{bundle.file('index')} holds {len(index)} vectors of dim {index.dim}; the manifest says "
                f"{bundle.n_items} of dim {bundle.dim}"
            )
        return cls(bundle, session, index, bundle.items(), threads)

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> str:
        """The device ONNX Runtime really runs the embedder on: "cuda" or "cpu"."""
        return "cuda" if self._session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.bundle.dim

    def __len__(self) -> int:
        """Number of training items in the index."""
        return len(self._items)

    # ------------------------------------------------------------------ verbs

    def embed(self, images: Sequence[ImageLike] | ImageLike, prompts: Sequence[str] | str) -> np.ndarray:
        """Embed (image, prompt) pairs → float32 (B, dim), L2-normalized.

        A single image with a single ``str`` prompt is a batch of one.

        Raises:
            InputError: undecodable/empty image, empty prompt, or mismatched counts.

        Example:
            >>> attributor.embed("generated.png", "a red square on grey").shape  # doctest: +SKIP
            (1, 64)
        """
        return self._embed(images, prompts, _NO_LAPS)

    def _embed(self, images: Any, prompts: Any, laps: _Laps | _NoLaps) -> np.ndarray:
        if isinstance(prompts, str):
            images, prompts = [images], [prompts]
        elif isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        images, prompts = list(images), list(prompts)
        if len(images) != len(prompts):
            raise InputError(f"got {len(images)} images and {len(prompts)} prompts; pass one prompt per image")
        if not images:
            raise InputError("no images given; pass at least one (image, prompt) pair")
        spec = self.bundle.spec
        many = len(images) > 1
        outs = []
        # The two steps of fastattr.preprocess.preprocess_images, called one by one so each can be timed.
        for start in range(0, len(images), _EMBED_BATCH):
            stop = start + _EMBED_BATCH
            laps.restart()
            rgb = decode_images(images[start:stop], first=start, numbered=many)
            laps("decode")
            pixel_values = resize_normalize(rgb, spec)
            laps("preprocess")
            input_ids, attention_mask = self._tokenizer(prompts[start:stop])
            laps("tokenize")
            feed = {"pixel_values": pixel_values, "input_ids": input_ids, "attention_mask": attention_mask}
            outs.append(self._session.run(None, feed)[0])
            laps("forward")
        return np.ascontiguousarray(np.concatenate(outs).astype(np.float32, copy=False))

    def _exclude(self, exclude: Iterable[int] | None) -> tuple[np.ndarray | None, int]:
        from .index import exclusion_ids

        ids = exclusion_ids(exclude, InputError)
        present = sum(1 for i in set(ids.tolist()) if i in self._items)
        return (ids if len(ids) else None), present

    def _to_results(self, ids: np.ndarray, scores: np.ndarray) -> list[Attribution]:
        out = []
        for item_id, score in zip(ids.tolist(), scores.tolist()):
            row = self._items.row(item_id)
            out.append(Attribution(len(out), int(item_id), float(score), self._items.captions[row], self._items.uris[row]))
        return out

    def query(
        self,
        image: ImageLike,
        prompt: str,
        *,
        k: int = 10,
        exclude: Iterable[int] | None = None,
        timings: MutableMapping[str, float] | None = None,
    ) -> list[Attribution]:
        """The k training items that most influenced ``image`` generated from ``prompt``, best first.

        Args:
            image: PIL image, numpy array (uint8/uint16, or float in [0, 1]), path or encoded bytes.
            prompt: the generation prompt; longer than the tokenizer's max_length is truncated.
            k: number of results, at least 1; larger than the index gives every item.
            exclude: item ids never to return (opt-outs); unknown ids are ignored.
            timings: a dict to fill with the seconds (``time.perf_counter``) this call spent per
                stage: "decode" (image → RGB uint8), "preprocess" (resize + normalize), "tokenize",
                "forward" (ONNX Runtime), "search" (index), "assemble" (result objects) and "total"
                (the whole call; the stages sum to a little less). Existing keys are overwritten,
                others left alone; if the call raises, the contents are undefined. None (default)
                times nothing.

        Raises:
            InputError: bad image, empty prompt, k < 1, a bad exclude list, or timings not a dict.

        Example:
            >>> timings = {}
            >>> hits = attributor.query("generated.png", "a red square", k=5, timings=timings)  # doctest: +SKIP
            >>> print({stage: f"{seconds * 1e3:.2f} ms" for stage, seconds in timings.items()})  # doctest: +SKIP
        """
        k = _check_k(k)
        return self.query_batch([image], [prompt], k=k, exclude=exclude, timings=timings)[0]

    def query_batch(
        self,
        images: Sequence[ImageLike],
        prompts: Sequence[str],
        *,
        k: int = 10,
        exclude: Iterable[int] | None = None,
        timings: MutableMapping[str, float] | None = None,
    ) -> list[list[Attribution]]:
        """:meth:`query` for a batch of (image, prompt) pairs; one result list per pair.

        ``timings`` (see :meth:`query`) then holds the seconds of the whole batch per stage.

        Example:
            >>> attributor.query_batch([img_a, img_b], ["a red square", "a blue disc"], k=3)  # doctest: +SKIP
        """
        started = 0.0 if timings is None else time.perf_counter()
        _check_timings(timings)
        k = _check_k(k)
        if isinstance(prompts, str):
            raise InputError("query_batch takes a list of prompts; use query() for a single pair")
        laps = _NO_LAPS if timings is None else _Laps(timings)
        excluded, n_present = self._exclude(exclude)
        vectors = self._embed(images, prompts, laps)
        k_eff = min(k, len(self._items) - n_present)
        if k_eff <= 0:
            out: list[list[Attribution]] = [[] for _ in range(len(vectors))]
        else:
            laps.restart()
            ids, scores = self._index.search_batch(vectors, k_eff, exclude=excluded, threads=self._threads)
            laps("search")
            out = [self._to_results(ids[row], scores[row]) for row in range(len(vectors))]
            laps("assemble")
        if timings is not None:
            timings["total"] = time.perf_counter() - started
        return out

    def __repr__(self) -> str:
        return f"Attributor({str(self.bundle.root)!r}, items={len(self)}, dim={self.dim}, device={self.device!r})"
