"""Attributor: load a bundle, embed (image, prompt) with ONNX Runtime, search the native index.

Runtime path only: numpy, onnxruntime, tokenizers, Pillow and fastattr.index; never torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping
from typing import Any, Iterable, Sequence

import numpy as np

from .bundle import Bundle, Items, open_bundle
from .errors import BundleError, InputError
from .onnx_embedder import DEVICES, EMBED_BATCH, NO_LAPS, embed_pairs, make_session, session_device
from .preprocess import ImageLike, Tokenizer
from .results import Attribution

__all__ = ["Attributor", "STAGES"]

_VARIANTS = {"fp32": "embedder", "fp16": "embedder_fp16", "int8": "embedder_int8"}
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
            path: bundle folder (from ``fastattr bundle build``).
            device: "auto" (CUDA when onnxruntime offers it, else CPU, warning if CUDA fails),
                "cuda" (DeviceError if unavailable) or "cpu".
            threads: threads for ONNX Runtime and the index scan; None lets each choose.
            verify: "full" (SHA-256 of every file) or "sizes" (sizes only; faster for big indexes).
            precision: "fp32", or "fp16"/"int8" to use that variant when the bundle has it.

        Raises:
            BundleError: the bundle is missing, altered, of an unknown version or inconsistent.
            DeviceError: device="cuda" and no CUDA provider could be used.
        """
        if device not in DEVICES:
            raise InputError(f"device must be one of {DEVICES}, got {device!r}")
        if precision not in _VARIANTS:
            raise InputError(f"precision must be one of {sorted(_VARIANTS)}, got {precision!r}")
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise InputError(f"threads must be None or at least 1, got {threads!r}")
        bundle = open_bundle(path, verify=verify)
        if not bundle.has(_VARIANTS[precision]):
            raise BundleError(f"bundle {bundle.root} has no {precision} embedder; build it with `fastattr export --{precision}`")
        # No spinning: a query runs one forward and then the index scan, and ORT's workers spinning
        # after the forward took the scan's cores (bench/query/contention.py: the 1M scan took
        # 41 ms after a spinning forward, 30 ms after a quiet one, 31 ms alone).
        session = make_session(bundle.file(_VARIANTS[precision]), device=device, threads=threads, spinning=False)
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
        return session_device(self._session)

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
        return self._embed(images, prompts, NO_LAPS)

    def _embed(self, images: Any, prompts: Any, laps: Any) -> np.ndarray:
        if isinstance(prompts, str):
            images, prompts = [images], [prompts]
        elif isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        return embed_pairs(self._session, self.bundle.spec, self._tokenizer, list(images), list(prompts),
                           batch_size=EMBED_BATCH, laps=laps)

    def _exclude(self, exclude: Iterable[int] | None) -> tuple[np.ndarray | None, int]:
        from .index import exclusion_ids

        ids = exclusion_ids(exclude, InputError)
        present = sum(1 for i in set(ids.tolist()) if i in self._items)
        return (ids if len(ids) else None), present

    def _to_results(self, ids: np.ndarray, scores: np.ndarray) -> list[Attribution]:
        out = []
        for item_id, score in zip(ids.tolist(), scores.tolist()):
            row = self._items.row(item_id)
            out.append(Attribution(len(out) + 1, int(item_id), float(score), self._items.captions[row], self._items.uris[row]))
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
        laps = NO_LAPS if timings is None else _Laps(timings)
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
