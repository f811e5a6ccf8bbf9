"""One curation worker: scores queries of a prepared work folder, one atomic result file per query."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .._atomic import atomic_open
from ..errors import CheckpointError
from .method import TeacherMethod, load_array, query_seed

if TYPE_CHECKING:
    from ..models import DiffusionModel

__all__ = ["result_path", "Worker", "load_model_for"]


def result_path(work: Path, query_id: int) -> Path:
    """Where a finished query's (item rows, scores) live."""
    return work / "results" / f"q{query_id:06d}.npz"


def load_model_for(work: Path) -> "DiffusionModel":
    """The run's model, rebuilt from its folder and checked to be the one the run was prepared with."""
    from ..models import load_diffusion_model

    run = json.loads((work / "run.json").read_text(encoding="utf-8"))
    model = load_diffusion_model(run["model"]["path"])
    if model.digest() != run["model"]["digest"]:
        raise CheckpointError(
            f"the model folder {run['model']['path']} changed since this curation run started; "
            "restore it, or rerun the curation with --overwrite")
    return model


class Worker:
    """Everything one process needs to score the queries of a work folder with a method.

    Example:
        >>> worker = Worker(Path("runs/teacher/work"), method, model)  # doctest: +SKIP
        >>> worker.run(0)                                               # doctest: +SKIP
    """

    def __init__(self, work: Path, method: TeacherMethod, model: "DiffusionModel") -> None:
        self.work = work
        run = json.loads((work / "run.json").read_text(encoding="utf-8"))
        self.seed = int(run["config"]["seed"])
        model.unet.eval().requires_grad_(True)
        self.scorer = method.scorer(work, model)
        self.query_x = load_array(work / "query_x.npy")
        self.query_text = load_array(work / "query_text_states.npy")
        with np.load(work / "candidates.npz", allow_pickle=False) as cand:
            self.offsets, self.cand_items = cand["offsets"], cand["items"]

    def candidates(self, query_id: int) -> np.ndarray:
        """Row indices of the items query ``query_id`` is scored against."""
        return self.cand_items[self.offsets[query_id] : self.offsets[query_id + 1]]

    def scores(self, query_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(candidate rows, score per candidate) of query ``query_id``."""
        rows = self.candidates(query_id)
        tau = self.scorer.scores(self.query_x[query_id].float(), self.query_text[query_id].float(),
                                 query_seed(self.seed, query_id), rows)
        return rows, np.asarray(tau, dtype=np.float32)

    def run(self, query_id: int) -> tuple[int, float]:
        """Score one query and save its result atomically; returns (query id, seconds)."""
        start = time.perf_counter()
        rows, tau = self.scores(query_id)
        path = result_path(self.work, query_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"item_rows": rows.astype(np.int64), "score": tau.astype(np.float32)}
        if self.scorer.last_exact is not None:
            # Which scores are the full computation (the rest are screening estimates).
            arrays["exact"] = np.asarray(self.scorer.last_exact, dtype=bool)
            arrays["exact_top"] = np.int64(self.scorer.last_exact_top)
        with atomic_open(path, "wb") as handle:
            np.savez(handle, **arrays)
        return query_id, time.perf_counter() - start


_WORKER: Worker | None = None


def init_process(work: str, method: TeacherMethod, threads: int) -> None:
    """Pool initializer: one thread per worker (the workers provide the parallelism)."""
    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = Worker(Path(work), method, load_model_for(Path(work)))


def run_in_process(query_id: int) -> tuple[int, float]:
    """Pool task: score one query with this process's worker."""
    if _WORKER is None:
        raise CheckpointError("worker process was not initialized")
    return _WORKER.run(query_id)

