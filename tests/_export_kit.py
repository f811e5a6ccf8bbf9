"""Shared test fixtures for export/bundle/SDK tests: a tiny stand-in embedder, its export and bundle.

The stand-in honours the student contract (docs/CONTRACTS.md): forward(pixel_values, input_ids,
attention_mask) -> L2-normalized (B, D), from a tiny transformers ViT + BERT and an MLP head.
Each artefact is built once per test session (lru_cache), in a temporary folder.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SIDE = 16
MAX_LENGTH = 16
DIM = 16
N_ITEMS = 48

_ROOT = Path(tempfile.mkdtemp(prefix="fastattr-export-kit-"))
atexit.register(shutil.rmtree, _ROOT, True)


def root() -> Path:
    """The session's scratch folder."""
    return _ROOT


def _words() -> list[str]:
    import re

    from fastattr.world import held_out_captions

    text = " ".join(list(dataset().captions) + held_out_captions(32, seed=0)).lower()
    return sorted(set(re.findall(r"[a-z0-9]+", text)))


@functools.lru_cache(maxsize=None)
def tokenizer_file() -> Path:
    """A tiny word-level BERT-style tokenizer.json with fixed padding to MAX_LENGTH (like the student's)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for word in _words() + [".", ","]:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.enable_truncation(MAX_LENGTH)
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=MAX_LENGTH)
    path = _ROOT / "tokenizer.json"
    tok.save(str(path))
    return path


def make_standin(seed: int = 0) -> Any:
    """A tiny embedder module with the student's forward contract."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel, ViTConfig, ViTModel

    torch.manual_seed(seed)
    vocab_size = Tokenizer.from_file(str(tokenizer_file())).get_vocab_size()

    class StandIn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.image = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=64, image_size=IMAGE_SIDE, patch_size=8),
                                  add_pooling_layer=False)
            self.text = BertModel(BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64,
                                             max_position_embeddings=MAX_LENGTH + 8), add_pooling_layer=False)
            self.head = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, DIM))

        def forward(self, pixel_values: Any, input_ids: Any, attention_mask: Any) -> Any:
            image = self.image(pixel_values=pixel_values).last_hidden_state[:, 0]
            hidden = self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            text = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
            return torch.nn.functional.normalize(self.head(torch.cat([image, text], -1)), dim=-1)

    return StandIn().eval()


def spec_dict() -> dict[str, Any]:
    """The stand-in's EmbedderSpec in the student's dict layout."""
    return {"size": [IMAGE_SIDE, IMAGE_SIDE], "resize": "bilinear", "mean": [0.5, 0.4, 0.3],
            "std": [0.25, 0.2, 0.3], "tokenizer": str(tokenizer_file()), "max_length": MAX_LENGTH, "dim": DIM}


@functools.lru_cache(maxsize=None)
def standin() -> Any:
    """The session's stand-in module (one instance)."""
    return make_standin()


@functools.lru_cache(maxsize=None)
def dataset() -> Any:
    """A tiny embedded world of N_ITEMS items at IMAGE_SIDE pixels."""
    from fastattr.world import make_world

    return make_world(_ROOT / "world", n_items=N_ITEMS, seed=3, image_size=IMAGE_SIDE)


@functools.lru_cache(maxsize=None)
def exported() -> Any:
    """The stand-in exported with fp16 and int8 variants (parity-checked)."""
    from fastattr.export import export_embedder

    data = dataset()
    return export_embedder(standin(), spec_dict(), _ROOT / "export", fp16=True, int8=True,
                           images=np.asarray(data.images), captions=list(data.captions), source={"kind": "standin"})


@functools.lru_cache(maxsize=None)
def bundle() -> Path:
    """A complete bundle of the tiny world with the stand-in embedder."""
    from fastattr.bundle_build import build_bundle

    exported()
    return build_bundle(_ROOT / "bundle", embedder=_ROOT / "export", dataset=dataset(),
                        evaluation={"note": "stand-in"}, progress=False)


def copy_bundle(dest: Path) -> Path:
    """A private copy of the session bundle that a test may alter."""
    shutil.copytree(bundle(), dest)
    return dest

