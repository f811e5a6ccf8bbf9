"""Where an ``Attributor.query`` spends its time: the SDK's own steps, each callable alone.

The SDK exposes no timing hooks, so each stage is rebuilt from the pieces ``Attributor.query``
itself calls (``fastattr.preprocess`` functions, the session, the index, the result assembly),
on the same inputs. The stages' sum is checked against the measured end-to-end latency in the
report (the gap is the Python glue between stages).

Example:
    >>> fns = sdk_stages(attributor, png_bytes, "a red square", k=10)  # doctest: +SKIP
    >>> sorted(fns)  # doctest: +SKIP
    ['assemble', 'decode', 'forward', 'resize_normalize', 'search', 'tokenize']
"""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np

__all__ = ["SDK_STAGES", "sdk_stages", "bare_session", "bare_forward", "sample_png", "sample_prompt"]

# Stage order of Attributor.query; the plot stacks them in this order.
SDK_STAGES = ("decode", "resize_normalize", "tokenize", "forward", "search", "assemble")


def sdk_stages(attributor: Any, image: Any, prompt: str, *, k: int = 10) -> dict[str, Callable[[], Any]]:
    """Zero-argument callables, one per SDK stage, on fixed inputs (outputs of the previous stage).

    Uses the Attributor's internals (``_tokenizer``, ``_session``, ``_index``, ``_to_results``):
    benchmark code, not API; a rename in attributor.py shows up here as an AttributeError.
    """
    from fastattr.preprocess import normalize, resize_rgb, to_rgb_uint8

    spec = attributor.bundle.spec
    rgb = to_rgb_uint8(image)
    pixels = normalize(resize_rgb(rgb, spec.size, spec.resize)[None], spec.mean, spec.std)
    input_ids, attention_mask = attributor._tokenizer([prompt])
    feed = {"pixel_values": pixels, "input_ids": input_ids, "attention_mask": attention_mask}
    session, index, threads = attributor._session, attributor._index, attributor._threads
    vectors = np.ascontiguousarray(session.run(None, feed)[0].astype(np.float32, copy=False))
    ids, scores = index.search_batch(vectors, k, threads=threads)
    return {
        "decode": lambda: to_rgb_uint8(image),
        "resize_normalize": lambda: normalize(resize_rgb(rgb, spec.size, spec.resize)[None], spec.mean, spec.std),
        "tokenize": lambda: attributor._tokenizer([prompt]),
        "forward": lambda: session.run(None, feed),
        "search": lambda: index.search_batch(vectors, k, threads=threads),
        "assemble": lambda: attributor._to_results(ids[0], scores[0]),
    }


def bare_session(model_path: Any, *, threads: int | None, providers: list[Any] | None = None) -> Any:
    """A plain ONNX Runtime session on the same file with the same thread count (the bar's baseline)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), options, providers=providers or ["CPUExecutionProvider"])


def bare_forward(attributor: Any, session: Any, image: Any, prompt: str) -> Callable[[], Any]:
    """The bare ONNX forward of exactly the input the SDK feeds for (image, prompt)."""
    from fastattr.preprocess import preprocess_images

    pixels = preprocess_images([image], attributor.bundle.spec)
    input_ids, attention_mask = attributor._tokenizer([prompt])
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
