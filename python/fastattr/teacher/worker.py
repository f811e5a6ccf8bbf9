"""One curation worker: loads a prepared work folder and scores queries, one result file per query."""

from __future__ import annotations

import importlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_open
from ..errors import CheckpointError
from .ekfac import load_fisher
from .scoring import LossFn, grid_losses, scores_from_losses, seed_of
from .unlearn import apply_delta, query_gradient, unlearning_delta

__all__ = ["resolve_loss_fn", "result_path", "Scorer"]


def resolve_loss_fn(name: str) -> LossFn:
    """Import a loss function named ``"module:function"``; only fastattr's own modules are allowed."""
    module, _, attr = name.partition(":")
    if not module.startswith("fastattr.") or not attr:
        raise CheckpointError(
            f"loss function {name!r} must be 'fastattr.<module>:<function>', e.g. 'fastattr.t2i:loss'"
        )
    return getattr(importlib.import_module(module), attr)


def result_path(work: Path, query_id: int) -> Path:
    """Where a finished query's (item rows, scores) live."""
    return work / "results" / f"q{query_id:06d}.npz"


def _load_array(path: Path) -> torch.Tensor:
    # Memory-mapped, read-only: worker processes share the pages of the big arrays.
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that the mapping is read-only
        return torch.from_numpy(array)


class Scorer:
    """Everything one process needs to unlearn a query and score its candidates.

    Example:
        >>> scorer = Scorer(Path("runs/teacher/work"))  # doctest: +SKIP
        >>> scorer.run(0)                                 # doctest: +SKIP
    """

    def __init__(self, work: Path) -> None:
        from diffusers import UNet2DConditionModel
        from safetensors.torch import load_file

        self.work = work
        self.run_info: dict[str, Any] = json.loads((work / "run.json").read_text(encoding="utf-8"))
        cfg = self.run_info["config"]
        self.cfg = cfg
        unet_config = json.loads((work / "unet_config.json").read_text(encoding="utf-8"))
        self.unet = UNet2DConditionModel.from_config(unet_config)
        self.unet.load_state_dict(load_file(str(work / "unet.safetensors")), strict=True)
        self.unet.eval().requires_grad_(True)
        self.alphas_cumprod = torch.from_numpy(np.load(work / "alphas_cumprod.npy", allow_pickle=False))
        self.fisher = load_fisher(work / "fisher.safetensors")
        self.loss_fn = resolve_loss_fn(self.run_info["loss_fn"])
        self.timesteps = torch.tensor(self.run_info["timesteps"], dtype=torch.long)
        self.item_x = _load_array(work / "item_x.npy")
        self.item_text = _load_array(work / "item_text_states.npy")
        self.noise = _load_array(work / "item_noise.npy")
        self.base = _load_array(work / "base_losses.npy")
        self.base_flip = _load_array(work / "base_losses_flip.npy") if cfg["flip"] else None
        self.query_x = _load_array(work / "query_x.npy")
        self.query_text = _load_array(work / "query_text_states.npy")
        with np.load(work / "candidates.npz", allow_pickle=False) as cand:
            self.offsets, self.cand_items = cand["offsets"], cand["items"]

    def candidates(self, query_id: int) -> np.ndarray:
        """Row indices of the items query ``query_id`` is scored against."""
        return self.cand_items[self.offsets[query_id] : self.offsets[query_id + 1]]

    def scores(self, query_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Unlearn query ``query_id`` and return (candidate rows, τ per candidate)."""
        cfg = self.cfg
        grads = query_gradient(
            self.unet,
            self.query_x[query_id],
            self.query_text[query_id],
            self.alphas_cumprod,
            n_draws=cfg["query_draws"],
            batch_size=cfg["batch_size"],
            seed=seed_of(cfg["seed"], "query", query_id),
            loss_fn=self.loss_fn,
        )
        delta = unlearning_delta(
            self.fisher, grads, eta=cfg["eta"], n_train=int(self.run_info["n_items"]), kind=cfg["fisher_kind"]
        )
        rows = self.candidates(query_id)
        idx = torch.from_numpy(rows)
        common = dict(loss_fn=self.loss_fn, batch_size=cfg["batch_size"], autocast_bf16=cfg["bf16"])
        args = (self.item_x[idx], self.item_text[idx], self.noise[idx], self.timesteps, self.alphas_cumprod)
        with apply_delta(self.unet, delta):
            after = grid_losses(self.unet, *args, **common)
            after_flip = grid_losses(self.unet, *args, flip=True, **common) if cfg["flip"] else None
        base_flip = self.base_flip[idx] if self.base_flip is not None else None
        tau = scores_from_losses(after, self.base[idx], after_flip, base_flip)
        return rows, tau.numpy()

    def run(self, query_id: int) -> tuple[int, float]:
        """Score one query and save its result atomically; returns (query id, seconds)."""
        start = time.perf_counter()
        rows, tau = self.scores(query_id)
        path = result_path(self.work, query_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as handle:
            np.savez(handle, item_rows=rows.astype(np.int64), score=tau.astype(np.float32))
        return query_id, time.perf_counter() - start


_SCORER: Scorer | None = None


def init_process(work: str, threads: int) -> None:
    """Pool initializer: one thread per worker (the workers provide the parallelism)."""
    global _SCORER
    torch.set_num_threads(threads)
    _SCORER = Scorer(Path(work))


def run_in_process(query_id: int) -> tuple[int, float]:
    """Pool task: score one query with this process's scorer."""
    if _SCORER is None:
        raise CheckpointError("worker process was not initialized")
    return _SCORER.run(query_id)
