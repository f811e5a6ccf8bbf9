"""Where an ``Attributor.query`` spends its time, read from the SDK's public ``timings`` hook.

``sdk_breakdown`` calls the real ``Attributor.query(..., timings=dict)`` repeatedly and takes
the median of each stage's seconds, so the breakdown is of the code a user runs, with its glue,
not of stages rebuilt beside it. ``bare_forward`` is the baseline the bars compare against: a
plain ONNX Runtime session fed exactly the tensors the SDK builds (via the public
``fastattr.preprocess`` functions and the bundle's tokenizer file).

Example:
    >>> stages = sdk_breakdown(attributor, png_bytes, "a red square", k=10, n=20)  # doctest: +SKIP
    >>> list(stages)  # doctest: +SKIP
    ['decode', 'preprocess', 'tokenize', 'forward', 'search', 'assemble', 'total']
"""

from __future__ import annotations

import dataclasses
import io
import time
from typing import Any, Callable

import numpy as np

from fastattr.attributor import STAGES as SDK_STAGES

from .timing import Latency, summarize, time_calls

__all__ = ["SDK_STAGES", "sdk_breakdown", "batch_costs", "warm_index", "bare_session", "bare_forward", "sample_png", "sample_prompt"]


def sdk_breakdown(attributor: Any, image: Any, prompt: str, *, k: int = 10, n: int = 50, warmup: int = 3,
                  max_seconds: float | None = None) -> dict[str, Latency]:
    """Per-stage latency of real ``attributor.query`` calls, from the SDK's ``timings`` hook.

    Runs ``warmup`` untimed queries, then up to ``n`` queries (stopping after ``max_seconds``
    once 3 are done), each filling a fresh timings dict. Returns one :class:`Latency` per key
    of ``SDK_STAGES`` plus "total" (the hook's own whole-call time), in pipeline order; p50 is
    the median over the calls.

    Example:
        >>> out = sdk_breakdown(attributor, png_bytes, "a red square", n=5)  # doctest: +SKIP
        >>> out["forward"].p50_ms > 0  # doctest: +SKIP
        True
    """
    for _ in range(warmup):
        attributor.query(image, prompt, k=k)
    keys = (*SDK_STAGES, "total")
    seconds: dict[str, list[float]] = {key: [] for key in keys}
    start = time.perf_counter()
    for done in range(1, n + 1):
        timings: dict[str, float] = {}
        attributor.query(image, prompt, k=k, timings=timings)
        for key in keys:
            seconds[key].append(timings[key])
        if max_seconds is not None and time.perf_counter() - start > max_seconds and done >= 3:
            break
    return {key: summarize(values) for key, values in seconds.items()}


def batch_costs(attributor: Any, image: Any, prompt: str, *, sizes: tuple[int, ...] = (1, 4, 16), k: int = 10,
                n: int = 20, max_seconds: float | None = None) -> dict[int, Latency]:
    """Per-image latency of ``attributor.query_batch`` at each batch size (a batch's seconds / its size).

    A product that samples several images at once may attribute them in one call; this says
    what each image then costs, against single ``query`` calls (batch size 1).

    Example:
        >>> costs = batch_costs(attributor, png_bytes, "a red square", sizes=(1, 4), n=3)  # doctest: +SKIP
        >>> sorted(costs)  # doctest: +SKIP
        [1, 4]
    """
    out: dict[int, Latency] = {}
    for size in sizes:
        images, prompts = [image] * size, [prompt] * size
        call = (lambda: attributor.query(image, prompt, k=k)) if size == 1 else \
            (lambda: attributor.query_batch(images, prompts, k=k))
        whole = time_calls(call, n=n, warmup=1, max_seconds=max_seconds)
        # Percentiles of a batch's seconds over its size are the percentiles of the per-image cost.
        out[size] = dataclasses.replace(whole, **{name: round(getattr(whole, name) / size, 4) for name in
                                                  ("p50_ms", "p99_ms", "mean_ms", "min_ms", "max_ms")})
    return out


def warm_index(bundle: Any, threads: int | None = None) -> None:
    """Read the bundle's index file once through a public handle, so the page cache holds it.

    The first scan after mapping a big index pays disk reads; a server warms once at start.
    (The SDK's own mapping still takes minor faults on its first scan: the warmup queries pay them.)
    """
    from fastattr import index as index_module

    handle = index_module.open(str(bundle.file("index")))
    if hasattr(handle, "warmup"):
        handle.warmup(threads)


def bare_session(model_path: Any, *, threads: int | None, device: str = "cpu") -> Any:
    """A plain ONNX Runtime session on the same file with the SDK's settings (the bar's baseline).

    Made by the SDK's own ``fastattr.onnx_embedder.make_session``, so the bare forward differs
    from the SDK's only by what the SDK does around it.
    """
    from fastattr.onnx_embedder import make_session

    return make_session(model_path, device=device, threads=threads)


def bare_forward(bundle: Any, session: Any, image: Any, prompt: str) -> Callable[[], Any]:
    """The bare ONNX forward of exactly the input the SDK feeds for (image, prompt).

    The tensors come from the public pieces the SDK uses: ``preprocess_images`` with the bundle's
    spec and ``Tokenizer.from_file`` on the bundle's tokenizer file.
    """
    from fastattr.preprocess import Tokenizer, preprocess_images

    pixels = preprocess_images([image], bundle.spec)
    tokenizer = Tokenizer.from_file(bundle.file("tokenizer"), max_length=bundle.spec.max_length)
    input_ids, attention_mask = tokenizer([prompt])
    feed = {"pixel_values": pixels, "input_ids": input_ids, "attention_mask": attention_mask}
    return lambda: session.run(None, feed)


def sample_png(side: int = 512, *, seed: int = 0) -> bytes:
    """A deterministic ``side``×``side`` RGB PNG (smooth gradients plus noise), as a generator emits.

    Example:
        >>> sample_png(16)[:4]
        b'\\x89PNG'
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / max(side - 1, 1)
    base = np.stack([x, y, (x + y) / 2], axis=-1) * 200
    img = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def sample_prompt() -> str:
    """A typical text-to-image prompt (about 20 tokens)."""
    return "a photo of a red double-decker bus parked beside a brick building on a rainy street at dusk"
