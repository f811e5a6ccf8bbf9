"""Synthetic inputs for the student tests: a tiny world and a teacher set with a known ranking rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from fastattr._atomic import save_npy, write_json


def attribute_vectors(attributes: list[dict]) -> np.ndarray:
    """One-hot of (main shape, main colour, background) per item: the toy teacher's notion of influence."""
    keys = [("shape", lambda a: a["shapes"][0]["shape"]), ("colour", lambda a: a["shapes"][0]["colour"]),
            ("background", lambda a: a["background"])]
    columns = []
    for _, get in keys:
        values = sorted({get(a) for a in attributes})
        columns.append(np.asarray([[get(a) == v for v in values] for a in attributes], np.float32))
    return np.concatenate(columns, axis=1)


def write_teacher_set(folder: Path, dataset, *, n_train: int = 24, n_test: int = 6, m: int = 32,
                      seed: int = 0) -> Path:
    """Queries are noisy copies of items; tau = attribute agreement + tiny noise; contract layout.

    Train queries rank their top-``m`` candidates; test queries rank every item.
    """
    rng = np.random.default_rng(seed)
    n = len(dataset)
    vec = attribute_vectors(dataset.attributes)
    sources = rng.choice(n, size=n_train + n_test, replace=False)
    images = np.asarray(dataset.images)[sources].astype(np.int16) + rng.integers(-8, 9, (len(sources), 16, 16, 3))
    rows, qid, iid, rank, score = [], [], [], [], []
    for q, src in enumerate(sources):
        split = "train" if q < n_train else "test"
        rows.append({"query_id": q, "caption": dataset.captions[src], "split": split})
        tau = vec @ vec[src] + 0.01 * rng.standard_normal(n)
        tau[src] += 1.0  # the query's own source item is the most influential
        order = np.argsort(-tau, kind="stable")
        if split == "train":
            order = order[:m]
        qid += [q] * len(order)
        iid += order.tolist()
        rank += list(range(len(order)))
        score += tau[order].tolist()
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "teacher_set.json", {"format": "fastattr-teacher-set", "version": 1, "n_items": n,
                                             "candidates_k": m, "subsample_m": m, "timesteps": 4})
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    save_npy(folder / "query_images.npy", np.clip(images, 0, 255).astype(np.uint8))
    np.savez(folder / "pairs.npz", query_id=np.asarray(qid, np.int64), item_id=np.asarray(iid, np.int64),
             rank=np.asarray(rank, np.int32), score=np.asarray(score, np.float32))
    return folder


def tiny_text_encoder_folder(folder: Path) -> Path:
    """A 1-layer BERT with MiniLM's tokenizer, saved as a transformers folder (random weights, seeded)."""
    import torch
    import transformers

    from fastattr.student.encoders import minilm_path

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(Path(minilm_path(), name), folder / name)
    return folder
