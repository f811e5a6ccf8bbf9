"""Algorithm 1: curate the teacher set, resumably and in parallel over worker processes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .._atomic import save_npy, write_bytes, write_json
from ..errors import CheckpointError, InputError
from .ekfac import FISHER_KINDS, KVFisher
from .features import FEATURE_DESCRIPTION, retrieval_features, retrieval_means, subsample, top_k_candidates
from .scoring import grid_losses, item_noise, seed_of, timestep_grid
from .teacher_set import write_teacher_set
from .worker import Scorer, init_process, resolve_loss_fn, result_path, run_in_process

__all__ = ["CurationConfig", "curate"]


@dataclass
class CurationConfig:
    """Settings of one curation run (stored in ``teacher_set.json``).

    ``full()`` gives the paper-like sizes; the defaults fit the demo's time budget on 2 cores.

    Example:
        >>> CurationConfig(n_train_queries=10).subsample_m
        48
    """

    # Defaults sized for the demo's budget on 2 cores (bench/teacher_speed.py): a test query
    # scores all N items (N × n_timesteps forward passes), a train query only M of them.
    n_train_queries: int = 128
    n_test_queries: int = 4
    candidates_k: int = 256
    subsample_m: int | None = 48
    # 16 grid timesteps (DESIGN: 10-20): near-duplicate top-1 66 % at 4, 86-88 % at 16; bf16
    # autocast pays for it (939 vs 451 samples/s on 2 cores; τ Spearman 0.984 against fp32 at
    # η = 0.01, identical top 10 over 256 items). docs/teacher.md has the measurements.
    n_timesteps: int = 16
    query_draws: int = 32
    # η = 0.01 keeps the step near the linear (influence) regime on the demo model: the query's
    # own loss rises by a few % rather than several-fold (η = 1), and near-duplicate top-1 was
    # best there among η ∈ {0.002, 0.01, 0.05, 1} (see the issue-4 report).
    eta: float = 0.01
    fisher_kind: str = "ekfac"
    flip: bool = False
    bf16: bool = True
    batch_size: int = 256
    seed: int = 0

    @classmethod
    def full(cls, **overrides: Any) -> "CurationConfig":
        """Full-size settings: more queries, candidates, timesteps and draws."""
        base = dict(n_train_queries=1000, n_test_queries=100, candidates_k=1000, subsample_m=500,
                    n_timesteps=16, query_draws=512)
        base.update(overrides)
        return cls(**base)

    def check(self, n_items: int) -> None:
        """Refuse settings that cannot work for a training set of ``n_items``."""
        if self.fisher_kind not in FISHER_KINDS:
            raise InputError(f"fisher_kind {self.fisher_kind!r} is not one of {FISHER_KINDS}")
        if self.n_train_queries < 0 or self.n_test_queries < 0 or self.n_train_queries + self.n_test_queries == 0:
            raise InputError("curation needs at least one query (n_train_queries + n_test_queries ≥ 1)")
        if not 1 <= self.candidates_k <= n_items:
            raise InputError(f"candidates_k = {self.candidates_k} must be in [1, {n_items}] (training-set size)")
        if self.subsample_m is not None and not 1 <= self.subsample_m:
            raise InputError(f"subsample_m must be ≥ 1 or None, got {self.subsample_m}")
        if self.query_draws < 1 or self.batch_size < 1 or not self.eta > 0:
            raise InputError("query_draws and batch_size must be ≥ 1 and eta > 0")


def _digest(*arrays: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if isinstance(a, (str, bytes)):
            h.update(a.encode() if isinstance(a, str) else a)
        else:
            h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return h.hexdigest()


def _prepare(work: Path, run_info: dict[str, Any], *, unet: nn.Module, alphas_cumprod: torch.Tensor,
             item_images: np.ndarray, item_text: np.ndarray, item_ids: np.ndarray,
             query_images: np.ndarray, query_text: np.ndarray, progress: bool) -> None:
    """Write everything the workers read; then the base losses, computed once for all queries."""
    from safetensors.torch import save
    from tqdm.auto import tqdm

    from ..t2i import to_model_input

    cfg = run_info["config"]
    unet_cfg = {k: v for k, v in dict(unet.config).items()}
    write_json(work / "unet_config.json", unet_cfg)
    state = {k: v.detach().contiguous() for k, v in unet.state_dict().items()}
    write_bytes(work / "unet.safetensors", save(state))
    save_npy(work / "alphas_cumprod.npy", alphas_cumprod.float().numpy())
    item_x = to_model_input(np.asarray(item_images))
    save_npy(work / "item_x.npy", item_x.numpy())
    save_npy(work / "item_text_states.npy", np.asarray(item_text, dtype=np.float32))
    save_npy(work / "query_x.npy", to_model_input(np.asarray(query_images)).numpy())
    save_npy(work / "query_text_states.npy", np.asarray(query_text, dtype=np.float32))
    ts = torch.tensor(run_info["timesteps"], dtype=torch.long)
    noise = item_noise(item_ids, ts, tuple(item_x.shape[1:]), seed=cfg["seed"])
    save_npy(work / "item_noise.npy", noise.numpy())

    # Candidates: top-K by the frozen feature (+ uniform subsample) for train queries, all items for test.
    n_items = len(item_images)
    pix_mean, txt_mean = retrieval_means(np.asarray(item_images), item_text)
    item_f = retrieval_features(np.asarray(item_images), np.asarray(item_text), pixel_mean=pix_mean, text_mean=txt_mean)
    query_f = retrieval_features(np.asarray(query_images), np.asarray(query_text), pixel_mean=pix_mean, text_mean=txt_mean)
    splits = run_info["splits"]
    train_q = [q for q, s in enumerate(splits) if s == "train"]
    top = top_k_candidates(query_f[train_q], item_f, cfg["candidates_k"]) if train_q else None
    lists: list[np.ndarray] = []
    for q, split in enumerate(splits):
        if split == "test":
            lists.append(np.arange(n_items, dtype=np.int64))
        else:
            rng = np.random.default_rng(seed_of(cfg["seed"], "subsample", q))
            lists.append(subsample(top[train_q.index(q)], cfg["subsample_m"], rng))
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in lists])]).astype(np.int64)
    from .._atomic import atomic_open

    with atomic_open(work / "candidates.npz", "wb") as handle:
        np.savez(handle, offsets=offsets, items=np.concatenate(lists))

    loss_fn = resolve_loss_fn(run_info["loss_fn"])
    chunk = 512
    for name, flip in (("base_losses", False), ("base_losses_flip", True)):
        if flip and not cfg["flip"]:
            continue
        out = torch.empty(n_items, len(ts))
        for start in tqdm(range(0, n_items, chunk), desc="losses before unlearning", disable=not progress):
            sl = slice(start, start + chunk)
            out[sl] = grid_losses(unet, item_x[sl], torch.from_numpy(np.asarray(item_text[sl], np.float32)),
                                  noise[sl], ts, alphas_cumprod, loss_fn=loss_fn,
                                  batch_size=cfg["batch_size"], flip=flip, autocast_bf16=cfg["bf16"])
        save_npy(work / f"{name}.npy", out.numpy())
    write_json(work / "prepared.json", {"fingerprint": run_info["prep_fingerprint"]})


def curate(
    out: str | os.PathLike[str],
    *,
    unet: nn.Module,
    alphas_cumprod: torch.Tensor,
    item_images: np.ndarray,
    item_text_states: np.ndarray | torch.Tensor,
    item_ids: Sequence[int] | np.ndarray,
    fisher: KVFisher,
    query_captions: Sequence[str],
    query_images: np.ndarray,
    query_text_states: np.ndarray | torch.Tensor,
    splits: Sequence[str],
    config: CurationConfig | None = None,
    loss_fn: str = "fastattr.t2i:loss",
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Rank training items for every query with the teacher and write the teacher-set folder.

    Resumable: ``out/work`` keeps the prepared inputs and one result file per finished query; a
    rerun with the same inputs and settings skips what is done. A different run refuses to reuse
    the folder unless ``overwrite``. With ``workers > 1`` the queries are spread over spawned
    processes of one thread each.

    Example:
        >>> curate("runs/teacher", unet=m.unet, alphas_cumprod=m.alphas_cumprod, ...)  # doctest: +SKIP
    """
    config = config or CurationConfig()
    n_items = len(item_images)
    config.check(n_items)
    n_q = len(query_captions)
    if not (len(query_images) == len(splits) == n_q == len(query_text_states)):
        raise InputError(f"{n_q} query captions but {len(query_images)} images, {len(query_text_states)} "
                         f"text states and {len(splits)} splits: give one of each per query")
    if set(splits) - {"train", "test"}:
        raise InputError(f"query splits must be 'train' or 'test', got {sorted(set(splits))}")
    if len(item_text_states) != n_items or len(item_ids) != n_items:
        raise InputError(f"{n_items} items but {len(item_text_states)} text states and {len(item_ids)} ids")
    if workers < 1:
        raise InputError(f"workers must be ≥ 1, got {workers}")
    resolve_loss_fn(loss_fn)
    root, work = Path(out), Path(out) / "work"
    item_text = np.asarray(item_text_states, dtype=np.float32)
    query_text = np.asarray(query_text_states, dtype=np.float32)
    ts = timestep_grid(config.n_timesteps, int(alphas_cumprod.shape[0]))
    weights = [v.detach().float().numpy() for v in unet.state_dict().values()]
    # Two fingerprints: the prepared inputs (noise, candidates, losses before unlearning) depend
    # on the data and the scoring grid only, so changing η, the draws or the Fisher keeps them.
    prep_keys = ("seed", "n_timesteps", "candidates_k", "subsample_m", "flip", "bf16")
    prep_fingerprint = _digest(json.dumps({k: getattr(config, k) for k in prep_keys}, sort_keys=True), loss_fn,
                               *weights, alphas_cumprod.numpy(), np.asarray(item_images), item_text,
                               np.asarray(item_ids, np.int64), np.asarray(query_images), query_text,
                               json.dumps([list(query_captions), list(splits)]))
    fingerprint = _digest(prep_fingerprint, json.dumps(dataclasses.asdict(config), sort_keys=True),
                          fisher.digest())
    run_info = {"fingerprint": fingerprint, "prep_fingerprint": prep_fingerprint,
                "config": dataclasses.asdict(config), "loss_fn": loss_fn,
                "n_items": n_items, "timesteps": ts.tolist(), "splits": list(splits)}
    old = work / "run.json"
    if old.is_file():
        if json.loads(old.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
            if not overwrite:
                raise CheckpointError(
                    f"{work} holds a curation run with other inputs or settings; resume it with the same "
                    "ones, or pass overwrite=True (CLI: --overwrite) to start afresh")
            # Only this run's own results go; caches of the caller (e.g. text states) stay.
            shutil.rmtree(work / "results", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    write_json(old, run_info)
    write_bytes(work / "fisher.safetensors", fisher.to_bytes())
    prepared = work / "prepared.json"
    if not (prepared.is_file() and json.loads(prepared.read_text()).get("fingerprint") == prep_fingerprint):
        _prepare(work, run_info, unet=unet, alphas_cumprod=alphas_cumprod, item_images=item_images,
                 item_text=item_text, item_ids=np.asarray(item_ids), query_images=query_images,
                 query_text=query_text, progress=progress)
    pending = [q for q in range(n_q) if not result_path(work, q).is_file()]
    start = time.perf_counter()
    seconds = _score_all(work, pending, workers=workers, progress=progress)
    results = []
    for q in range(n_q):
        with np.load(result_path(work, q), allow_pickle=False) as r:
            results.append((r["item_rows"], r["score"]))
    meta = {"n_items": n_items, "candidates_k": config.candidates_k, "subsample_m": config.subsample_m,
            "timesteps": ts.tolist(), "n_queries": n_q, "n_train_queries": list(splits).count("train"),
            "n_test_queries": list(splits).count("test"), "method": "AbU+" if config.fisher_kind == "ekfac" else "AbU",
            "config": dataclasses.asdict(config), "loss_fn": loss_fn, "candidate_feature": FEATURE_DESCRIPTION,
            "seconds_per_query": {s: float(np.mean(v)) for s, v in seconds.items() if v},
            "scoring_seconds_this_run": round(time.perf_counter() - start, 2),
            "resumed_queries": n_q - len(pending), **(extra_meta or {})}
    return write_teacher_set(root, captions=list(query_captions), splits=list(splits),
                             query_images=query_images, results=results, meta=meta)


def _score_all(work: Path, pending: list[int], *, workers: int, progress: bool) -> dict[str, list[float]]:
    """Score the pending queries in this process or a pool; returns seconds per query by split."""
    from tqdm.auto import tqdm

    splits = json.loads((work / "run.json").read_text(encoding="utf-8"))["splits"]
    seconds: dict[str, list[float]] = {"train": [], "test": []}
    if not pending:
        return seconds
    # Test queries (whole training set) first: they are the longest tasks, so the pool balances better.
    pending = sorted(pending, key=lambda q: (splits[q] != "test", q))
    bar = tqdm(total=len(pending), desc="teacher queries", unit="query", disable=not progress)
    if workers == 1:
        scorer = Scorer(work)
        for q in pending:
            _, sec = scorer.run(q)
            seconds[splits[q]].append(sec)
            bar.update(1)
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=init_process, initargs=(str(work), 1)) as pool:
            for q, sec in pool.imap_unordered(run_in_process, pending, chunksize=1):
                seconds[splits[q]].append(sec)
                bar.update(1)
    bar.close()
    return seconds
