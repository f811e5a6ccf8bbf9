"""The TeacherMethod seam: how one attribution method scores a query's candidates; AbU+ is the first."""

from __future__ import annotations

import abc
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Callable

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

__all__ = ["TeacherMethod", "QueryScorer", "AbUPlus", "load_array", "screened_scores"]


def load_array(path: Path) -> torch.Tensor:
    """A read-only memory-mapped ``.npy`` as a torch tensor: worker processes share its pages."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that the mapping is read-only
        return torch.from_numpy(array)


class QueryScorer(abc.ABC):
    """A method's per-process state: scores one query's candidates at a time.

    ``last_exact`` says which of the last :meth:`scores` are the method's full computation
    (None: all of them); a method that screens a long candidate list sets it (AbU+ on test queries).
    """

    last_exact: np.ndarray | None = None
    #: with ``last_exact``: how many of the top scores screening aimed to keep exact
    last_exact_top: int | None = None

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
    #: rank whole-training-set queries by screening (see :func:`screened_scores`); None: the
    #: largest mAP cutoff of the training set (metrics.cutoffs) must come out exact
    screen: bool = False
    exact_top: int | None = None

    def __post_init__(self) -> None:
        if self.fisher_kind not in FISHER_KINDS:
            raise InputError(f"fisher_kind {self.fisher_kind!r} is not one of {FISHER_KINDS}")
        if self.query_draws < 1 or self.batch_size < 1 or not self.eta > 0:
            raise InputError("query_draws and batch_size must be ≥ 1 and eta > 0")
        if self.exact_top is not None and self.exact_top < 1:
            raise InputError(f"exact_top must be ≥ 1 or None, got {self.exact_top}")
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
        all_cols = np.arange(len(self.timesteps))
        self.last_exact, self.last_exact_top = None, None
        with apply_delta(self.model, delta):
            top = self._exact_top()
            if self._screens(rows, top):
                tau, self.last_exact = screened_scores(
                    lambda sel, cols: self._after_losses(rows[sel], cols), self.base[idx].numpy(), exact_top=top)
                self.last_exact_top = top
                return tau
            after = self._after_losses(rows, all_cols)
            after_flip = self._after_losses(rows, all_cols, flip=True) if m.flip else None
        base_flip = self.base_flip[idx] if self.base_flip is not None else None
        return scores_from_losses(after, self.base[idx], after_flip, base_flip).numpy()

    def _exact_top(self) -> int:
        from ..student.metrics import cutoffs

        return self.method.exact_top or max(cutoffs(self.n_items))

    def _screens(self, rows: np.ndarray, exact_top: int) -> bool:
        """Screen only whole-training-set rankings (test queries), whose use is their top: a train
        query's candidates all become labels, so they are always scored in full."""
        m = self.method
        return (m.screen and not m.flip and len(rows) == self.n_items
                and len(self.timesteps) >= SCREEN_MIN_TIMESTEPS
                and self.n_items >= SCREEN_MIN_RATIO * exact_top)

    def _after_losses(self, rows: np.ndarray, cols: np.ndarray, *, flip: bool = False) -> torch.Tensor:
        """Losses of ``rows`` at grid columns ``cols`` with the current weights, (len(rows), len(cols)).

        The noise is regenerated a chunk of items at a time (it is a function of the item and the
        timestep only), so a whole-set query never holds N × T noise tensors.
        """
        m = self.method
        ts = self.timesteps[torch.as_tensor(cols, dtype=torch.long)]
        out = torch.empty(len(rows), len(cols))
        chunk = max(1, 8192 // max(1, len(cols)))
        for start in range(0, len(rows), chunk):
            idx = torch.from_numpy(np.ascontiguousarray(rows[start:start + chunk]))
            noise = item_noise(self.item_ids[idx].tolist(), ts, tuple(self.item_x.shape[1:]), seed=m.seed)
            out[start:start + len(idx)] = grid_losses(
                self.model, self.item_x[idx].float(), self.item_text[idx].float(), noise, ts,
                batch_size=m.batch_size, flip=flip, autocast_bf16=m.bf16)
        return out


#: screening needs the training set to be this many times the exact top, or it saves nothing
SCREEN_MIN_RATIO = 8
#: and this many timesteps, so that its first stage sees 4 of them per item
SCREEN_MIN_TIMESTEPS = 16


def screened_scores(
    after_losses: Callable[[np.ndarray, np.ndarray], torch.Tensor],
    base: np.ndarray,
    *,
    exact_top: int,
    keep_fraction: float = 0.25,
    block: int = 64,
    miss_rate: float = 0.05,
    calibration_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """τ of every item of a whole-set query, exact (bit for bit) for the items likely to reach the top.

    All items are scored on every 4th grid column from 1; the best ``keep_fraction`` by that
    partial τ on every 4th from 3; then items are completed ``block`` at a time, highest upper bound first, until no
    incomplete item's upper bound reaches the ``exact_top``-th best exact τ.

    An item's upper bound is its partial τ plus c × its own scale: the spread of its partial
    columns (with the median spread added in quadrature, since 4 columns estimate a spread
    poorly), shrunk by the fraction of columns still missing. The items that matter most are
    the least regular: a near copy's columns spread several times wider than a typical item's,
    and a margin shared by all items let one through on the tests' tiny model. c comes from the
    errors, in units of scale, of the items completed so far: ``calibration_size`` drawn at random
    first (items completed for their high estimate err towards overestimates), then at least
    2 × ``exact_top`` more. It is their RMS times the normal quantile at which, were they
    Gaussian, any of the n items exceeds its bound with probability ``miss_rate``, and never
    less than their 99th percentile. Below :data:`SCREEN_MIN_TIMESTEPS` columns every item is
    completed.

    A loss does not depend on the batch it is computed in, so completed items have the τ the full
    grid gives; incomplete ones keep their partial τ, below every exact top item.

    Args:
        after_losses: ``(item positions, grid columns) -> (n, len(cols))`` losses after unlearning.
        base: (n, T) losses before unlearning.

    Returns:
        (τ float32 (n,), exact bool (n,)).
    """
    n, n_t = base.shape
    everyone = np.arange(n)
    if n_t < SCREEN_MIN_TIMESTEPS:
        full = after_losses(everyone, np.arange(n_t))
        return scores_from_losses(full, torch.from_numpy(base)).numpy(), np.ones(n, dtype=bool)
    z = NormalDist().inv_cdf(1 - miss_rate / n)
    stages = [np.arange(1, n_t, 4), np.arange(3, n_t, 4)]
    losses = np.full((n, n_t), np.nan, dtype=np.float32)
    done = np.zeros((n, n_t), dtype=bool)

    def run(sel: np.ndarray, cols: np.ndarray) -> None:
        if len(sel) and len(cols):
            losses[np.ix_(sel, cols)] = after_losses(sel, cols).numpy()
            done[np.ix_(sel, cols)] = True

    def estimate_of(sel: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(partial τ, scale of its error) of items ``sel`` from grid columns ``cols``."""
        diff = losses[np.ix_(sel, cols)].astype(np.float64) - base[np.ix_(sel, cols)]
        spread = np.sqrt(np.mean(diff**2, axis=1))  # about the origin: 4 columns can hide a spread, not a mean
        spread = np.sqrt(spread**2 + np.median(spread) ** 2)
        return diff.mean(axis=1), spread * np.sqrt(1 / len(cols) - 1 / n_t)

    run(everyone, stages[0])
    est1, scale1 = estimate_of(everyone, stages[0])
    calibration = np.sort(np.random.default_rng(n).choice(n, size=min(n, calibration_size), replace=False))
    second = np.argsort(-est1, kind="stable")[: max(1, int(np.ceil(keep_fraction * n)))]
    second = np.union1d(second, calibration)
    run(second, stages[1])
    has2 = np.isin(everyone, second)
    # The best estimate so far: from both stages where there are two.
    estimate, scale = est1.copy(), scale1.copy()
    estimate[second], scale[second] = estimate_of(second, np.concatenate(stages))
    exact = np.zeros(n, dtype=bool)
    tau = np.full(n, np.nan)
    min_exact = min(n, len(calibration) + 2 * exact_top)

    def factor(est: np.ndarray, scale: np.ndarray, sel: np.ndarray) -> float:
        errors = np.abs(est[sel] - tau[sel]) / scale[sel]
        return max(float(np.sqrt(np.mean(errors**2))) * z, float(np.quantile(errors, 0.99)))

    def next_block() -> np.ndarray:
        """The next items to complete: none once no incomplete item's bound reaches the top."""
        pending = np.flatnonzero(~exact)
        key = estimate[pending]
        if exact.sum() >= min_exact:
            ex = np.flatnonzero(exact)
            c1, c2 = factor(est1, scale1, ex), factor(estimate, scale, ex[has2[ex]])
            key = np.where(has2, estimate + c2 * scale, est1 + c1 * scale1)[pending]
            reach = key >= np.sort(tau[ex])[-exact_top]
            pending, key = pending[reach], key[reach]
        return np.sort(pending[np.argsort(-key, kind="stable")[:block]])

    chosen = calibration
    while len(chosen):
        for group in (chosen[has2[chosen]], chosen[~has2[chosen]]):
            if len(group):
                run(group, np.flatnonzero(~done[group[0]]))
        # The same arithmetic as an unscreened query's τ, so completed items match it bit for bit.
        tau[chosen] = scores_from_losses(torch.from_numpy(losses[chosen]), torch.from_numpy(base[chosen])).numpy()
        exact[chosen] = True
        chosen = next_block()
    return np.where(exact, tau, estimate).astype(np.float32), exact


def query_seed(seed: int, query_id: int) -> int:
    """The seed of a query's gradient draws (a function of the run seed and the query only)."""
    return seed_of(seed, "query", query_id)
