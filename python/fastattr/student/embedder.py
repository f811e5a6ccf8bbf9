"""The student checkpoint folder: save it, load it back, and hand export the embedder with its spec."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import atomic_dir, write_json
from .._deps import require
from ..errors import CheckpointError
from .encoders import ImageEncoder, TextEncoder, pretrained_model
from .head import Embedder, Head
from .spec import EmbedderSpec, load_tokenizer

torch = require("torch", feature="fastattr.student")

__all__ = ["FORMAT", "Student", "save_student", "load_student", "load_embedder"]

FORMAT = "fastattr-student"
VERSION = 1


@dataclass
class Student:
    """A loaded checkpoint: frozen encoders, trained head, the spec and everything student.json says."""

    image_encoder: ImageEncoder
    text_encoder: TextEncoder
    head: Head
    spec: EmbedderSpec
    info: dict[str, Any]

    def embedder(self) -> Embedder:
        """The single module export converts: (pixels, ids, mask) -> unit embedding."""
        return Embedder(self.image_encoder, self.text_encoder, self.head).eval()


def _spec(image_encoder: ImageEncoder, text_encoder: TextEncoder, head: Head, tokenizer: str) -> EmbedderSpec:
    return EmbedderSpec(size=image_encoder.size, resize=image_encoder.resize, mean=image_encoder.mean,
                        std=image_encoder.std, tokenizer=tokenizer, max_length=text_encoder.max_length,
                        dim=head.dim)


def save_student(folder: str | Path, image_encoder: ImageEncoder, text_encoder: TextEncoder, head: Head,
                 *, training: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a checkpoint: student.json, head.safetensors, tokenizer.json and both encoders' weights.

    An existing folder at ``folder`` is replaced only if it is a student checkpoint, or with ``overwrite``.

    Example:
        >>> save_student("runs/student", image_encoder, text_encoder, head)  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    with atomic_dir(folder, marker="student.json", what="student checkpoint", overwrite=overwrite) as tmp:
        image_encoder.model.save_pretrained(tmp / "image_encoder", safe_serialization=True)
        text_encoder.model.save_pretrained(tmp / "text_encoder", safe_serialization=True)
        text_encoder.tokenizer.save(str(tmp / "tokenizer.json"))
        state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        save_file(state, str(tmp / "head.safetensors"))
        write_json(tmp / "student.json", {
            "format": FORMAT, "version": VERSION,
            "image_encoder": {**image_encoder.describe(), "path": "image_encoder"},
            "text_encoder": {**text_encoder.describe(), "path": "text_encoder"},
            "head": dict(head.config), "alpha": float(head.alpha.detach()), "beta": float(head.beta.detach()),
            "spec": _spec(image_encoder, text_encoder, head, "tokenizer.json").to_dict(),
            "training": training or {},
        })
    return folder


def _read_info(root: Path) -> dict[str, Any]:
    meta = root / "student.json"
    if not meta.is_file():
        raise CheckpointError(f"{root} is not a student checkpoint: student.json is missing. "
                              "Train one with `fastattr student train`.")
    try:
        info = json.loads(meta.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta} is not valid JSON ({exc}); re-run `fastattr student train`.") from exc
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{meta} has format {info.get('format')!r}, expected {FORMAT!r}.")
    if int(info.get("version", 0)) != VERSION:
        raise CheckpointError(f"{meta} is version {info.get('version')!r}; this fastattr reads version "
                              f"{VERSION}. Re-train with `fastattr student train`.")
    for name in ("head.safetensors", "tokenizer.json", "image_encoder", "text_encoder"):
        if not (root / name).exists():
            raise CheckpointError(f"Student checkpoint {root} is incomplete: {name} is missing.")
    return info


def load_student(path: str | Path) -> Student:
    """Load a checkpoint written by :func:`save_student`; every part is checked, nothing is unpickled.

    Example:
        >>> student = load_student("runs/student")  # doctest: +SKIP
        >>> student.spec.dim  # doctest: +SKIP
        128
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(path)
    info = _read_info(root)
    try:
        img, txt, head_cfg = info["image_encoder"], info["text_encoder"], info["head"]
        image_model = pretrained_model(str(root / img["path"]), img["model_type"], img["pooling"], modality="image")
        image_encoder = ImageEncoder(image_model, pooling=img["pooling"], size=img["size"], resize=img["resize"],
                                     mean=img["mean"], std=img["std"], source=img["source"])
        text_model = pretrained_model(str(root / txt["path"]), txt["model_type"], txt["pooling"], modality="text")
        text_encoder = TextEncoder(text_model, pooling=txt["pooling"], tokenizer=load_tokenizer(root / "tokenizer.json"),
                                   max_length=txt["max_length"], source=txt["source"])
        head = Head(int(head_cfg["in_dim"]), hidden=int(head_cfg["hidden"]), dim=int(head_cfg["dim"]),
                    n_hidden=int(head_cfg["n_hidden"]), dropout=float(head_cfg["dropout"]),
                    skip=bool(head_cfg.get("skip", False)), image_dim=head_cfg.get("image_dim"),
                    image_weight=float(head_cfg.get("image_weight", 0.5)))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{root / 'student.json'} lacks a field ({exc!r}); re-run `fastattr student train`.") from exc
    if image_encoder.dim + text_encoder.dim != head.config["in_dim"] or head.config["image_dim"] not in (
            None, image_encoder.dim):
        raise CheckpointError(
            f"Student checkpoint {root}: encoders give {image_encoder.dim} + {text_encoder.dim} features "
            f"but the head expects {head.config['in_dim']}."
        )
    try:
        state = load_file(str(root / "head.safetensors"))
        head.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{root / 'head.safetensors'} does not hold this head's weights: {exc}") from exc
    head.eval()
    spec = _spec(image_encoder, text_encoder, head, str((root / "tokenizer.json").resolve()))
    return Student(image_encoder, text_encoder, head, spec, info)


def load_embedder(path: str | Path) -> tuple[Any, EmbedderSpec]:
    """(module, spec): the whole embedder as one eval-mode torch module and its preprocessing.

    ``module(pixel_values, input_ids, attention_mask)`` returns L2-normalized (B, dim) rows;
    ``spec.tokenizer`` is the absolute path of the checkpoint's fixed-length tokenizer.json.

    Example:
        >>> module, spec = load_embedder("runs/student")  # doctest: +SKIP
        >>> from fastattr.student.spec import preprocess_images, tokenize  # doctest: +SKIP
        >>> ids, mask = tokenize(["a red square"], spec)  # doctest: +SKIP
    """
    student = load_student(path)
    return student.embedder(), student.spec
