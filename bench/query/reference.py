"""The reference serving path the SDK is measured against: torch eager forward and numpy brute force.

This is how a research codebase serves attribution queries: decode and resize with Pillow,
normalize with numpy, tokenize with transformers' fast tokenizer, run the torch modules eagerly
under ``no_grad``, then score every training item against fp32 features held in RAM and sort.
The top-k uses ``argpartition`` + a sort of k items (cheaper than a full ``argsort``), so the
comparison is, if anything, generous to the reference.

Example:
    >>> ref = EagerReference(model, preprocessing, "tokenizer.json", 77, features, ids)  # doctest: +SKIP
    >>> ids, scores = ref.query(image_bytes, "a red square", k=10)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from typing import Any, Callable

import numpy as np

__all__ = ["EagerReference", "brute_force_topk"]


def brute_force_topk(features: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows of ``features @ query`` (fp32), best first: (row indices, scores).

    Example:
        >>> f = np.eye(3, dtype=np.float32)
        >>> brute_force_topk(f, np.array([0, 1, 0], np.float32), 1)[0].tolist()
        [1]
    """
    scores = features @ query
    k = min(k, scores.shape[0])
    top = np.argpartition(-scores, k - 1)[:k]
    order = top[np.argsort(-scores[top], kind="stable")]
    return order, scores[order]


class EagerReference:
    """Pillow + numpy preprocessing, torch eager embedder, numpy brute-force search over fp32 rows.

    Args:
        model: the torch embedder ``forward(pixel_values, input_ids, attention_mask) -> (B, D)``.
        preprocessing: ``{"size": [H, W], "resize": "bicubic"|..., "mean": [...], "std": [...]}``.
        tokenizer_file: the tokenizer.json the SDK bundle ships (loaded via transformers).
        max_length: token limit (longer prompts are truncated).
        features: fp32 (N, D) training-item embeddings (unit rows).
        ids: (N,) item ids in row order.
        threads: torch intra-op threads (the benchmark pins both sides to the same count).
    """

    def __init__(self, model: Any, preprocessing: dict[str, Any], tokenizer_file: str | os.PathLike[str],
                 max_length: int, features: np.ndarray, ids: np.ndarray, *, threads: int | None = None) -> None:
        import torch
        from transformers import PreTrainedTokenizerFast

        if threads is not None:
            torch.set_num_threads(int(threads))
        self.torch = torch
        self.model = model.eval()
        self.size = tuple(int(v) for v in preprocessing["size"])
        self.resize = str(preprocessing["resize"])
        self.mean = np.asarray(preprocessing["mean"], np.float32)
        self.std = np.asarray(preprocessing["std"], np.float32)
        self.tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), pad_token="[PAD]")
        self.max_length = int(max_length)
        self.features = np.ascontiguousarray(features, dtype=np.float32)
        self.ids = np.asarray(ids)

    # Each stage is a method so the benchmark can time it alone with the same code the query runs.
    def preprocess(self, image: bytes | np.ndarray) -> Any:
        """Decode (bytes) or take an RGB array, resize with Pillow, normalize → torch (1, 3, H, W)."""
        from PIL import Image

        img = Image.open(io.BytesIO(image)).convert("RGB") if isinstance(image, (bytes, bytearray)) else Image.fromarray(image)
        filters = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                   "bicubic": Image.Resampling.BICUBIC}
        if img.size != (self.size[1], self.size[0]):
            img = img.resize((self.size[1], self.size[0]), filters[self.resize])
        x = (np.asarray(img, dtype=np.float32) / 255.0 - self.mean) / self.std
        return self.torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))

    def tokenize(self, prompt: str) -> tuple[Any, Any]:
        """Tokenize one prompt (truncated, not padded: a batch of one needs none)."""
        enc = self.tokenizer([prompt], truncation=True, max_length=self.max_length, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def forward(self, pixels: Any, input_ids: Any, attention_mask: Any) -> np.ndarray:
        """Eager torch forward under no_grad → (D,) fp32 numpy."""
        with self.torch.no_grad():
            return self.model(pixels, input_ids, attention_mask)[0].numpy()

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over the fp32 features → (item ids, scores)."""
        rows, scores = brute_force_topk(self.features, vector, k)
        return self.ids[rows], scores

    def query(self, image: bytes | np.ndarray, prompt: str, *, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The whole reference query: preprocess, tokenize, forward, search."""
        pixels = self.preprocess(image)
        input_ids, attention_mask = self.tokenize(prompt)
        return self.search(self.forward(pixels, input_ids, attention_mask), k)

    def stages(self, image: bytes | np.ndarray, prompt: str, *, k: int = 10) -> dict[str, Callable[[], Any]]:
        """Zero-argument callables for each stage on fixed inputs (for per-stage timing)."""
        pixels = self.preprocess(image)
        input_ids, attention_mask = self.tokenize(prompt)
        vector = self.forward(pixels, input_ids, attention_mask)
        return {
            "decode_preprocess": lambda: self.preprocess(image),  # decode + resize + normalize in one step
            "tokenize": lambda: self.tokenize(prompt),
            "forward": lambda: self.forward(pixels, input_ids, attention_mask),
            "search": lambda: self.search(vector, k),
        }
