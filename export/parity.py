"""The parity check: the ONNX embedder must reproduce the torch one on at least 64 inputs.

Bars (issue 6): max |Δ| ≤ 1e-4 and cosine ≥ 0.9999 for the fp32 graph. Variants (fp16, int8)
are measured the same way and must keep a looser cosine floor.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from fastattr.errors import CheckpointError, FastattrError
from fastattr.onnx_embedder import make_session
from fastattr.preprocess import PreprocessSpec, Tokenizer, normalize, resize_normalize

__all__ = [
    "ParityError",
    "Parity",
    "ParityInputs",
    "make_parity_inputs",
    "measure_parity",
    "check_parity",
    "MIN_INPUTS",
    "MAX_ABS",
    "MIN_COSINE",
]

MIN_INPUTS = 64
MAX_ABS = 1e-4
MIN_COSINE = 0.9999


class ParityError(FastattrError, RuntimeError):
    """An exported graph does not reproduce the torch embedder closely enough."""


@dataclass(frozen=True)
class Parity:
    """Measured agreement between two embedders on the same inputs.

    Example:
        >>> Parity(n=64, max_abs=1e-7, min_cosine=1.0, mean_cosine=1.0).passes(1e-4, 0.9999)
        True
    """

    n: int
    max_abs: float
    min_cosine: float
    mean_cosine: float

    def passes(self, max_abs: float, min_cosine: float) -> bool:
        """Whether both bars hold."""
        return self.max_abs <= max_abs and self.min_cosine >= min_cosine

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


@dataclass(frozen=True)
class ParityInputs:
    """A fixed set of embedder inputs, fed in batches of varied sequence lengths."""

    batches: list[dict[str, np.ndarray]]

    @property
    def n(self) -> int:
        """Number of (image, prompt) inputs."""
        return sum(len(b["pixel_values"]) for b in self.batches)


def make_parity_inputs(
    spec: PreprocessSpec,
    tokenizer: Tokenizer,
    *,
    n: int = MIN_INPUTS,
    seed: int = 0,
    images: np.ndarray | None = None,
    captions: Sequence[str] | None = None,
    batch_size: int = 16,
) -> ParityInputs:
    """Build ``n`` inputs: real images/captions when given (cycled), random ones otherwise.

    Random prompts are random token ids of random lengths, so padding, truncation-length
    sequences and single-token bodies are all exercised.

    Example:
        >>> inputs = make_parity_inputs(spec, tokenizer, n=64)  # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    height, width = spec.size
    if images is not None and len(images):
        picks = rng.integers(0, len(images), n)
        pixels = resize_normalize([np.asarray(images[i]) for i in picks], spec)
    else:
        pixels = normalize(rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8), spec.mean, spec.std)
    vocab = tokenizer._tok.get_vocab_size()
    batches = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if captions:
            texts = [captions[int(i)] for i in rng.integers(0, len(captions), stop - start)]
            ids, mask = tokenizer(texts)
        else:
            seq = int(rng.integers(2, spec.max_length + 1))
            ids = rng.integers(0, vocab, (stop - start, seq)).astype(np.int64)
            mask = np.zeros_like(ids)
            for row, length in enumerate(rng.integers(1, seq + 1, stop - start)):
                mask[row, :length] = 1
        batches.append({"pixel_values": pixels[start:stop], "input_ids": ids, "attention_mask": mask})
    return ParityInputs(batches)


def _torch_outputs(module: Any, inputs: ParityInputs) -> np.ndarray:
    import torch

    outs = []
    with torch.no_grad():
        for batch in inputs.batches:
            out = module(*(torch.from_numpy(batch[k]) for k in ("pixel_values", "input_ids", "attention_mask")))
            outs.append(out.float().numpy())
    return np.concatenate(outs)


def _onnx_outputs(onnx_path: str | os.PathLike[str], inputs: ParityInputs) -> np.ndarray:
    session = make_session(onnx_path, device="cpu", error=CheckpointError)
    return np.concatenate([session.run(None, batch)[0] for batch in inputs.batches]).astype(np.float32)


def compare(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    """Max |Δ| and per-row cosine between two (N, D) output sets."""
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = (reference * candidate).sum(1) / np.maximum(norms, 1e-30)
    return Parity(
        n=len(reference),
        max_abs=float(np.abs(reference - candidate).max()),
        min_cosine=float(cosine.min()),
        mean_cosine=float(cosine.mean()),
    )


def measure_parity(module: Any, onnx_path: str | os.PathLike[str], inputs: ParityInputs) -> Parity:
    """Run torch and ONNX Runtime (CPU) on the same inputs and compare.

    Example:
        >>> measure_parity(module, "embedder.onnx", inputs).max_abs < 1e-4  # doctest: +SKIP
        True
    """
    return compare(_torch_outputs(module.eval(), inputs), _onnx_outputs(onnx_path, inputs))


def check_parity(
    module: Any,
    onnx_path: str | os.PathLike[str],
    inputs: ParityInputs,
    *,
    max_abs: float = MAX_ABS,
    min_cosine: float = MIN_COSINE,
    what: str = "embedder.onnx",
) -> Parity:
    """Measure parity and raise ParityError unless it meets the bars.

    Raises:
        ParityError: fewer than 64 inputs, or max |Δ| / cosine outside the bars.
    """
    if inputs.n < MIN_INPUTS:
        raise ParityError(f"parity needs at least {MIN_INPUTS} inputs, got {inputs.n}")
    parity = measure_parity(module, onnx_path, inputs)
    if not parity.passes(max_abs, min_cosine):
        raise ParityError(
            f"{what} does not reproduce the torch embedder on {parity.n} inputs: max |Δ| = {parity.max_abs:.3g} "
            f"(bar {max_abs:g}), min cosine = {parity.min_cosine:.6f} (bar {min_cosine}). Nothing was written; "
            "check the module for train-mode layers or ops the exporter does not support"
        )
    return parity
