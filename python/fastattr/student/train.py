"""Training the head on frozen features with the learning-to-rank loss (or the regression ablation)."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .._deps import require
from .._progress import make_progress
from ..errors import CheckpointError, InputError
from .head import Head, join_features
from .loss import PairSampler, rank_labels, ranking_loss, regression_loss
from .metrics import average_precision

torch = require("torch", feature="fastattr.student")

__all__ = ["TrainConfig", "Features", "train_head", "split_queries", "embed_features"]


@dataclass
class TrainConfig:
    """Head and optimizer settings (DESIGN §3, scaled to the embedded world's feature sizes).

    Example:
        >>> TrainConfig(steps=100).lr
        0.001
    """

    hidden: int = 256
    dim: int = 128
    n_hidden: int = 3
    dropout: float = 0.1
    skip: bool = True
    image_weights: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 4096
    # 2000 steps (about 2 minutes on 2 cores): on the eval preset's 512 queries the held-out mAP
    # was still rising at 400, and test mAP@21 went 0.217 -> 0.485 -> 0.510 at 400 / 2000 / 3000.
    steps: int = 2000
    p_negative: float = 0.1
    val_fraction: float = 0.1
    eval_every: int = 100
    seed: int = 0
    objective: str = "rank"  # "rank" (BCE on y = 1 - r/M) or "regression" (MSE on the teacher score)

    def __post_init__(self) -> None:
        if self.objective not in ("rank", "regression"):
            raise InputError(f"objective must be 'rank' or 'regression', got {self.objective!r}.")
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1 or not 0 <= self.val_fraction < 1:
            raise InputError(f"steps, batch_size, eval_every must be >= 1 and val_fraction in [0, 1): {asdict(self)}")
        if not 0 <= self.p_negative < 1:
            raise InputError(f"p_negative must lie in [0, 1), got {self.p_negative}.")


@dataclass
class Features:
    """Frozen features of the queries (Q, Di), (Q, Dt) and items (N, Di), (N, Dt), as float32 numpy."""

    query_image: np.ndarray
    query_text: np.ndarray
    item_image: np.ndarray
    item_text: np.ndarray

    def joined(self) -> tuple[Any, Any]:
        """f for queries and items as torch tensors (unit image part ⊕ unit text part)."""
        q = join_features(torch.from_numpy(self.query_image), torch.from_numpy(self.query_text))
        x = join_features(torch.from_numpy(self.item_image), torch.from_numpy(self.item_text))
        return q.contiguous(), x.contiguous()


def split_queries(train_queries: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a fraction of the teacher's training queries (at least one when there are two or more).

    Example:
        >>> fit, val = split_queries(np.arange(10), 0.2, 0)
        >>> len(fit), len(val)
        (8, 2)
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.asarray(train_queries, np.int64))
    n_val = int(round(val_fraction * len(order)))
    if val_fraction > 0 and len(order) >= 2:
        n_val = min(max(n_val, 1), len(order) - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def embed_features(head: Head, features: Any, *, batch_size: int = 8192) -> np.ndarray:
    """g(f) for a (N, D) tensor in eval mode, batched -> float32 numpy (N, dim)."""
    head.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            out.append(head(features[start:start + batch_size]).numpy())
    return np.concatenate(out) if out else np.zeros((0, head.dim), np.float32)


def _validate(head: Head, fq: Any, fx: Any, q: np.ndarray, i: np.ndarray, y: np.ndarray, tau: np.ndarray,
              objective: str) -> dict[str, float]:
    """Held-out queries: pair loss on their candidates, and mAP of their teacher-best candidates.

    ``map``: the positives are each query's top 10 % of candidates by teacher rank (at least one),
    and AP is computed over the student's ranking of *all* items, as the test mAP is (DESIGN §4);
    ``candidate_map`` is the same AP within the candidates only.
    """
    head.eval()
    with torch.inference_mode():
        eq, ex = head(fq), head(fx)
        logits = head.logits(eq[torch.from_numpy(q)], ex[torch.from_numpy(i)])
        if objective == "rank":
            loss = ranking_loss(logits, torch.from_numpy(y))
        else:
            loss = regression_loss(logits, torch.from_numpy(tau))
        scores = logits.numpy()
        queries = np.unique(q)
        full = (eq[torch.from_numpy(queries)] @ ex.T).numpy()
    aps, cand_aps = [], []
    for row, query in enumerate(queries):
        sel = np.flatnonzero(q == query)
        top = np.argsort(-y[sel], kind="stable")[:max(1, int(round(0.1 * len(sel))))]
        cand_aps.append(average_precision(scores[sel], top))
        aps.append(average_precision(full[row], i[sel][top]))
    head.train()
    return {"loss": float(loss), "map": float(np.mean(aps)) if aps else float("nan"),
            "candidate_map": float(np.mean(cand_aps)) if cand_aps else float("nan")}


def train_head(features: Features, query_id: np.ndarray, item_id: np.ndarray, rank: np.ndarray,
               score: np.ndarray, train_queries: np.ndarray, *, n_items: int, config: TrainConfig,
               progress: bool = True) -> tuple[Head, dict[str, Any]]:
    """Fit g on the pairs of ``train_queries`` (a held-out part validates); return the best head + log.

    The returned head is the state with the best held-out mAP (see ``_validate``; the last
    state when there are no validation queries). Pairs of queries outside ``train_queries`` are never seen.

    Example:
        >>> head, log = train_head(feats, ts.query_id, ts.item_id, ts.rank, ts.score,
        ...                        ts.queries("train"), n_items=len(items), config=TrainConfig())  # doctest: +SKIP
    """
    if len(train_queries) == 0:
        raise InputError("The teacher set has no training queries; curate some with `fastattr teacher curate`.")
    fit_q, val_q = split_queries(train_queries, config.val_fraction, config.seed)
    fit = np.isin(query_id, fit_q)
    val = np.isin(query_id, val_q)
    if not fit.any():
        raise InputError("The training queries have no teacher pairs; the teacher set is empty.")
    torch.manual_seed(config.seed)
    fq, fx = features.joined()
    if fx.shape[0] != n_items:
        raise CheckpointError(f"Item features have {fx.shape[0]} rows but the dataset has {n_items} items.")
    # The regression ablation learns the teacher's absolute score in units of its spread over the
    # training pairs: an affine rescaling that keeps the scores absolute but the optimizer sane.
    tau_mean, tau_std = float(score[fit].mean()), float(score[fit].std() + 1e-12)
    tau = ((score - tau_mean) / tau_std).astype(np.float32)
    objective = config.objective
    sampler = PairSampler(query_id[fit], item_id[fit], rank[fit], tau[fit], n_items=n_items,
                          p_negative=config.p_negative if objective == "rank" else 0.0, seed=config.seed)
    image_dim = features.query_image.shape[1]

    def new_head(image_weight: float) -> Head:
        torch.manual_seed(config.seed)
        h = Head(fq.shape[1], hidden=config.hidden, dim=config.dim, n_hidden=config.n_hidden,
                 dropout=config.dropout, skip=config.skip, image_dim=image_dim, image_weight=image_weight)
        h.init_projection(fx)
        return h

    # The image/text balance is picked on the held-out queries before training: the paper's
    # thousands of queries let g learn it; with a few hundred, a bad start (e.g. an image
    # encoder that does not see what the teacher sees) costs most of the training budget.
    weights = list(config.image_weights) if val.any() else [0.5]
    val_y0 = rank_labels(rank, query_id)[val]
    starts = {}
    for w in weights:
        candidate = new_head(w)
        starts[w] = _validate(candidate, fq, fx, query_id[val], item_id[val], val_y0, np.zeros(int(val.sum()), np.float32),
                              "rank")["map"] if val.any() else 0.0
    image_weight = max(weights, key=lambda w: (starts[w], -abs(w - 0.5)))
    head = new_head(image_weight)
    head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    val_y = rank_labels(rank, query_id)[val]
    loss_fn = ranking_loss if objective == "rank" else regression_loss
    history: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], dict[str, Any] | None] = ((0.0, 0.0), None)
    start = time.perf_counter()
    step, first_loss, last_loss = 0, float("nan"), float("nan")

    def checkpoint(train_loss: float | None) -> dict[str, float]:
        nonlocal best
        metrics = _validate(head, fq, fx, query_id[val], item_id[val], val_y, tau[val], objective)
        history.append({"step": step, "train_loss": train_loss, **{f"val_{k}": v for k, v in metrics.items()}})
        # Keep the state whose ranking of all items puts the held-out queries' best candidates
        # highest (what the test mAP measures); the loss breaks ties. Step 0 competes too, so
        # training that does not generalize falls back to the starting point.
        key = (-metrics["map"], metrics["loss"])
        if best[1] is None or key < best[0]:
            best = (key, {"step": step, **metrics, "state": copy.deepcopy(head.state_dict())})
        return metrics

    if val.any():
        checkpoint(None)
    with make_progress(total=config.steps, desc=f"train head ({objective})", unit="step",
                       disable=not progress, leave=False) as bar:
        while step < config.steps:
            for q, i, y, t in sampler.epoch(batch_size=config.batch_size):
                # Each distinct query and item goes through g once per step, however often it appears.
                uq, q_inv = np.unique(q, return_inverse=True)
                ui, i_inv = np.unique(i, return_inverse=True)
                eq = head(fq[torch.from_numpy(uq)])[torch.from_numpy(q_inv)]
                ei = head(fx[torch.from_numpy(ui)])[torch.from_numpy(i_inv)]
                target = torch.from_numpy(y if objective == "rank" else t)
                logits = head.logits(eq, ei)
                loss = loss_fn(logits, target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                last_loss = float(loss.detach())
                first_loss = last_loss if step == 1 else first_loss
                if val.any() and (step % config.eval_every == 0 or step == config.steps):
                    metrics = checkpoint(last_loss)
                    bar.set_postfix(loss=f"{last_loss:.4f}", val_map=f"{metrics['map']:.3f}")
                bar.update(1)  # after the postfix, so the last progress line shows the final metrics
                if step >= config.steps:
                    break
    seconds = time.perf_counter() - start
    chosen = {"step": step}
    if best[1] is not None:
        head.load_state_dict(best[1].pop("state"))
        chosen = best[1]
    head.eval()
    log = {"config": asdict(config), "seconds": seconds, "steps": step, "first_train_loss": first_loss,
           "last_train_loss": last_loss, "chosen": chosen, "history": history,
           "n_fit_queries": int(len(fit_q)), "n_val_queries": int(len(val_q)), "n_fit_pairs": int(fit.sum()),
           "tau_mean": tau_mean, "tau_std": tau_std, "threads": torch.get_num_threads(),
           "image_weight": image_weight, "image_weight_val_map": {str(k): v for k, v in starts.items()}}
    return head, log
