"""The TeacherMethod seam: how one attribution method scores a query's candidates; AbU+ is the first."""

from __future__ import annotations

import abc
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._atomic import save_npy, write_bytes
from .._progress import make_progress
from ..errors import InputError
from .ekfac import FISHER_KINDS, KVFisher, load_fisher
from .scoring import grid_losses, item_noise, scores_from_losses, seed_of, timestep_grid
from .unlearn import apply_delta, query_gradient, unlearning_delta

if TYPE_CHECKING:
    from ..models import DiffusionModel

__all__ = ["TeacherMethod", "QueryScorer", "AbUPlus", "load_array"]


def load_array(path: Path) -> torch.Tensor:
    """A read-only memory-mapped ``.npy`` as a torch tensor: worker processes share its pages."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that the mapping is read-only
        return torch.from_numpy(array)


class QueryScorer(abc.ABC):
    """A method's per-process state: scores one query's candidates at a time."""

    @abc.abstractmethod
    def scores(self, query_x: torch.Tensor, query_states: torch.Tensor, query_seed: int,
               rows: np.ndarray) -> np.ndarray:
        """Influence of each candidate row on the query (larger = more influential), float32 (len(rows),)."""


class TeacherMethod(abc.ABC):
    """One attribution method behind curation (DESIGN.md §8): curation picks queries and
    candidates, runs the method per query (in any process), ranks and writes the teacher set.

    A method is a picklable object: curation hands it to its worker processes. A new method
    subclasses this and is passed as ``curate(..., method=...)``; curation does not change.
    """

    #: short name recorded in the teacher set ("AbU+", "AbU", ...)
    name: str = ""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON settings: part of the run's fingerprint, so a change starts the scores afresh."""

    def prepare_settings(self) -> dict[str, Any]:
        """The subset of :meth:`settings` that :meth:`prepare`'s outputs depend on."""
        return self.settings()

    def describe(self, model: "DiffusionModel") -> dict[str, Any]:
        """Extra facts for the teacher set's metadata (e.g. the scoring grid)."""
        return {}

    @abc.abstractmethod
    def prepare(self, work: Path, model: "DiffusionModel", *, item_ids: np.ndarray, progress: bool) -> None:
        """Compute everything that does not depend on the query, once, into ``work``.

        The item inputs are in ``work`` (``item_x.npy``, ``item_text_states.npy``).
        """

    @abc.abstractmethod
    def scorer(self, work: Path, model: "DiffusionModel") -> QueryScorer:
        """The per-process scorer, reading what :meth:`prepare` wrote."""


@dataclass
class AbUPlus(TeacherMethod):
    """Attribution by unlearning (DESIGN.md §2): one natural-gradient ascent step on the query
    with the EK-FAC (AbU+) or diagonal (AbU) Fisher of the K/V weights, scored as the loss
    increase of each candidate on a fixed timestep grid with per-item fixed noise.
    """

    fisher: KVFisher
    fisher_kind: str = "ekfac"
    eta: float = 0.01
    query_draws: int = 32
    n_timesteps: int = 16
    flip: bool = False
    bf16: bool = True
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fisher_kind not in FISHER_KINDS:
            raise InputError(f"fisher_kind {self.fisher_kind!r} is not one of {FISHER_KINDS}")
        if self.query_draws < 1 or self.batch_size < 1 or not self.eta > 0:
            raise InputError("query_draws and batch_size must be ≥ 1 and eta > 0")
        self.name = "AbU+" if self.fisher_kind == "ekfac" else "AbU"

    def settings(self) -> dict[str, Any]:
        fields = {k: v for k, v in asdict(self).items() if k != "fisher"}
        return {"name": self.name, **fields, "fisher": self.fisher.digest()}

    def prepare_settings(self) -> dict[str, Any]:
        # The noise, the grid and the losses before unlearning do not depend on η, the draws or
        # the Fisher, so changing those keeps them.
        # "layout" counts changes of what prepare() writes (2: item ids instead of stored noise),
        # so a folder prepared with other files is prepared again rather than half reused.
        return {"layout": 2, **{k: getattr(self, k) for k in ("n_timesteps", "flip", "bf16", "batch_size", "seed")}}

    def timesteps(self, model: "DiffusionModel") -> torch.Tensor:
        """The scoring grid for ``model``."""
        return timestep_grid(self.n_timesteps, int(model.num_train_timesteps))

    def describe(self, model: "DiffusionModel") -> dict[str, Any]:
        return {"timesteps": self.timesteps(model).tolist()}

    def prepare(self, work: Path, model: "DiffusionModel", *, item_ids: np.ndarray, progress: bool) -> None:
        write_bytes(work / "fisher.safetensors", self.fisher.to_bytes())
        item_x = load_array(work / "item_x.npy")
        item_text = load_array(work / "item_text_states.npy")
        ts = self.timesteps(model)
        # Each item's noise is a function of (seed, id, timestep), so it is regenerated chunk by
        # chunk here and per query in the scorer instead of stored: N × T × latent floats would
        # be hundreds of GB at a million items.
        save_npy(work / "item_ids.npy", np.asarray(item_ids, dtype=np.int64))
        shape = tuple(item_x.shape[1:])
        chunk = 512
        for name, flip in (("base_losses", False), ("base_losses_flip", True)):
            if flip and not self.flip:
                continue
            out = torch.empty(len(item_ids), len(ts))
            for start in make_progress(range(0, len(item_ids), chunk), desc="losses before unlearning",
                                       unit="chunk", disable=not progress):
                sl = slice(start, start + chunk)
                noise = item_noise(item_ids[sl], ts, shape, seed=self.seed)
                out[sl] = grid_losses(model, item_x[sl].float(), item_text[sl].float(), noise, ts,
                                      batch_size=self.batch_size, flip=flip, autocast_bf16=self.bf16)
            save_npy(work / f"{name}.npy", out.numpy())

    def scorer(self, work: Path, model: "DiffusionModel") -> QueryScorer:
        return _AbUScorer(self, work, model)


class _AbUScorer(QueryScorer):
    def __init__(self, method: AbUPlus, work: Path, model: "DiffusionModel") -> None:
        self.method, self.model = method, model
        # The Fisher is read back from the work folder, the same bytes for every process.
        self.fisher = load_fisher(work / "fisher.safetensors")
        self.timesteps = method.timesteps(model)
        self.item_x = load_array(work / "item_x.npy")
        self.item_text = load_array(work / "item_text_states.npy")
        self.item_ids = load_array(work / "item_ids.npy")
        self.base = load_array(work / "base_losses.npy")
        self.base_flip = load_array(work / "base_losses_flip.npy") if method.flip else None
        self.n_items = int(self.item_x.shape[0])

    def scores(self, query_x: torch.Tensor, query_states: torch.Tensor, query_seed: int,
               rows: np.ndarray) -> np.ndarray:
        m = self.method
        grads = query_gradient(self.model, query_x, query_states, n_draws=m.query_draws,
                               batch_size=m.batch_size, seed=query_seed)
        delta = unlearning_delta(self.fisher, grads, eta=m.eta, n_train=self.n_items, kind=m.fisher_kind)
        idx = torch.from_numpy(rows)
        noise = item_noise(self.item_ids[idx].tolist(), self.timesteps, tuple(self.item_x.shape[1:]), seed=m.seed)
        args = (self.item_x[idx].float(), self.item_text[idx].float(), noise, self.timesteps)
        common = dict(batch_size=m.batch_size, autocast_bf16=m.bf16)
        with apply_delta(self.model, delta):
            after = grid_losses(self.model, *args, **common)
            after_flip = grid_losses(self.model, *args, flip=True, **common) if m.flip else None
        base_flip = self.base_flip[idx] if self.base_flip is not None else None
        return scores_from_losses(after, self.base[idx], after_flip, base_flip).numpy()


def query_seed(seed: int, query_id: int) -> int:
    """The seed of a query's gradient draws (a function of the run seed and the query only)."""
    return seed_of(seed, "query", query_id)
