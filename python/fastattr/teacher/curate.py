"""Algorithm 1: curate the teacher set, resumably and in parallel over worker processes."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._atomic import atomic_open, write_json
from .._progress import make_progress
from ..data.cache import content_digest
from ..errors import CheckpointError, InputError
from .ekfac import FISHER_KINDS, KVFisher
from .features import FEATURE_DESCRIPTION, retrieval_features, retrieval_means, subsample, top_k_candidates
from .method import AbUPlus, TeacherMethod
from .scoring import seed_of
from .teacher_set import write_teacher_set
from .worker import Worker, init_process, result_path, run_in_process

if TYPE_CHECKING:
    from ..models import DiffusionModel

__all__ = ["CurationConfig", "ItemInputs", "QueryInputs", "curate"]


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
    # Test queries: screen the whole set and compute exactly only the items likely to reach the
    # top exact_top (None: the largest mAP cutoff). Off until measured on real grids
    # (docs/teacher.md "Screening").
    screen: bool = False
    exact_top: int | None = None

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
        if self.exact_top is not None and self.exact_top < 1:
            raise InputError(f"exact_top must be ≥ 1 or None, got {self.exact_top}")

    def method(self, fisher: KVFisher) -> AbUPlus:
        """The AbU+ (or AbU, with ``fisher_kind="diag"``) method with these settings."""
        return AbUPlus(fisher=fisher, fisher_kind=self.fisher_kind, eta=self.eta, query_draws=self.query_draws,
                       n_timesteps=self.n_timesteps, flip=self.flip, bf16=self.bf16,
                       batch_size=self.batch_size, seed=self.seed, screen=self.screen, exact_top=self.exact_top)


@dataclass
class ItemInputs:
    """The training items as the model sees them, in dataset row order.

    Attributes:
        x: (N, C, h, w) float32 model-space inputs (may be memory-mapped).
        text_states: (N, L, D) float32 text states of the captions (may be memory-mapped).
        ids: (N,) external item ids (they seed each item's fixed noise).
        digest: a digest of the three, when the caller already has one (e.g. the model-space
            cache's key); otherwise curation hashes the arrays.
    """

    x: Any
    text_states: Any
    ids: np.ndarray
    digest: str | None = None

    def __len__(self) -> int:
        return int(len(self.ids))


@dataclass
class QueryInputs:
    """The queries: prompts, their (generated or logged) images, model-space inputs and splits."""

    captions: list[str]
    images: np.ndarray          # uint8 (Q, R, R, 3), stored in the teacher set for the student
    x: Any                      # (Q, C, h, w) float32
    text_states: Any            # (Q, L, D) float32
    splits: list[str]           # "train" | "test" per query
    sources: list[str] | None = None   # "generated" or the logged image's path, per query

    def check(self) -> None:
        n_q = len(self.captions)
        if not (len(self.images) == len(self.x) == len(self.text_states) == len(self.splits) == n_q):
            raise InputError(f"{n_q} query captions but {len(self.images)} images, {len(self.x)} inputs, "
                             f"{len(self.text_states)} text states and {len(self.splits)} splits: give one "
                             "of each per query")
        if set(self.splits) - {"train", "test"}:
            raise InputError(f"query splits must be 'train' or 'test', got {sorted(set(self.splits))}")
        if n_q == 0:
            raise InputError("curation needs at least one query")


def _save_rows(path: Path, array: Any) -> None:
    """Save an (n, ...) array or tensor as float32 ``.npy`` a slice at a time, atomically."""
    src = array.detach().numpy() if isinstance(array, torch.Tensor) else array
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=tuple(src.shape))
    for lo in range(0, len(src), 4096):
        out[lo:lo + 4096] = np.asarray(src[lo:lo + 4096], dtype=np.float32)
    out.flush()
    del out
    os.replace(tmp, path)


def _candidates(items: ItemInputs, queries: QueryInputs, config: CurationConfig) -> tuple[np.ndarray, np.ndarray]:
    """Each query's candidate rows: all items for test queries, top-K by the frozen feature
    (+ a uniform subsample of M) for train queries. Returns (offsets, concatenated rows)."""
    n_items = len(items)
    x_mean, txt_mean = retrieval_means(items.x, items.text_states)
    train_q = [q for q, s in enumerate(queries.splits) if s == "train"]
    top = None
    if train_q:
        item_f = retrieval_features(items.x, items.text_states, input_mean=x_mean, text_mean=txt_mean)
        query_f = retrieval_features(np.asarray(queries.x)[train_q], np.asarray(queries.text_states)[train_q],
                                     input_mean=x_mean, text_mean=txt_mean)
        top = top_k_candidates(query_f, item_f, config.candidates_k)
    lists: list[np.ndarray] = []
    for q, split in enumerate(queries.splits):
        if split == "test":
            lists.append(np.arange(n_items, dtype=np.int64))
        else:
            rng = np.random.default_rng(seed_of(config.seed, "subsample", q))
            lists.append(subsample(top[train_q.index(q)], config.subsample_m, rng))
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in lists])]).astype(np.int64)
    return offsets, np.concatenate(lists)


def _prepare(work: Path, model: "DiffusionModel", items: ItemInputs, queries: QueryInputs,
             method: TeacherMethod, config: CurationConfig, fingerprint: str, progress: bool) -> None:
    """Write everything the workers read, then the method's query-independent part, once: nothing
    is done when ``work/prepared.json`` already holds ``fingerprint``."""
    prepared = work / "prepared.json"
    if prepared.is_file() and json.loads(prepared.read_text()).get("fingerprint") == fingerprint:
        return
    _save_rows(work / "item_x.npy", items.x)
    _save_rows(work / "item_text_states.npy", items.text_states)
    _save_rows(work / "query_x.npy", queries.x)
    _save_rows(work / "query_text_states.npy", queries.text_states)
    offsets, rows = _candidates(items, queries, config)
    with atomic_open(work / "candidates.npz", "wb") as handle:
        np.savez(handle, offsets=offsets, items=rows)
    method.prepare(work, model, item_ids=np.asarray(items.ids, dtype=np.int64), progress=progress)
    write_json(prepared, {"fingerprint": fingerprint})


def curate(
    out: str | os.PathLike[str],
    model: "DiffusionModel",
    items: ItemInputs,
    queries: QueryInputs,
    *,
    method: TeacherMethod,
    config: CurationConfig | None = None,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Rank training items for every query with ``method`` and write the teacher-set folder.

    Resumable: ``out/work`` keeps the prepared inputs and one result file per finished query; a
    rerun with the same inputs and settings skips what is done. A different run refuses to reuse
    the folder unless ``overwrite``. With ``workers > 1`` the queries are spread over spawned
    processes of one thread each, which rebuild the model from its folder (``model.path``).

    The steps: check the inputs, fingerprint the run and open (or resume) ``out/work``, prepare
    what the workers read (once per prepared fingerprint), score the queries not yet done, and
    assemble the teacher set from the per-query results.

    Example:
        >>> method = CurationConfig().method(fisher)                             # doctest: +SKIP
        >>> curate("runs/teacher", model, items, queries, method=method)         # doctest: +SKIP
    """
    config = config or CurationConfig()
    _check_inputs(model, items, queries, config, workers)
    root, work = Path(out), Path(out) / "work"
    n_q = len(queries.captions)
    prep_fingerprint, fingerprint = _fingerprints(model, items, queries, method, config)
    run_info = {"fingerprint": fingerprint, "prep_fingerprint": prep_fingerprint,
                "config": dataclasses.asdict(config), "method": method.settings(), "model": _model_info(model),
                "n_items": len(items), "splits": list(queries.splits)}
    _open_work(work, run_info, overwrite=overwrite)
    _prepare(work, model, items, queries, method, config, prep_fingerprint, progress)
    pending = [q for q in range(n_q) if not result_path(work, q).is_file()]
    start = time.perf_counter()
    seconds = _score_all(work, pending, method=method, model=model, workers=workers, progress=progress)
    results, screened = _load_results(work, n_q)
    meta = {**_describe_run(model, len(items), queries, method, config),
            "seconds_per_query": {s: float(np.mean(v)) for s, v in seconds.items() if v},
            "scoring_seconds_this_run": round(time.perf_counter() - start, 2),
            "resumed_queries": n_q - len(pending), "screened_queries": screened,
            **(extra_meta or {})}
    return write_teacher_set(root, captions=list(queries.captions), splits=list(queries.splits),
                             query_images=queries.images, results=results, meta=meta,
                             sources=queries.sources)


def _check_inputs(model: "DiffusionModel", items: ItemInputs, queries: QueryInputs, config: CurationConfig,
                  workers: int) -> None:
    """Refuse settings and inputs that disagree, before anything is written."""
    n_items = len(items)
    config.check(n_items)
    queries.check()
    if len(items.text_states) != n_items or len(items.x) != n_items:
        raise InputError(f"{n_items} item ids but {len(items.x)} inputs and {len(items.text_states)} text states")
    if workers < 1:
        raise InputError(f"workers must be ≥ 1, got {workers}")
    if workers > 1 and model.path is None:
        raise InputError("curation with workers > 1 rebuilds the model from its folder in each process; "
                         "load the model with fastattr.models.load_diffusion_model(folder) or use workers=1")


def _fingerprints(model: "DiffusionModel", items: ItemInputs, queries: QueryInputs, method: TeacherMethod,
                  config: CurationConfig) -> tuple[str, str]:
    """(prepared, run) fingerprints: of the prepared inputs (model, items, queries, the candidate
    settings and the method's query-independent part), and of the whole run (adds every other setting).

    A run whose prepared fingerprint matches ``work/prepared.json`` reuses what was prepared; a
    run whose fingerprint matches ``work/run.json`` resumes its per-query results.
    """
    item_digest = items.digest or content_digest(items.x, items.text_states, np.asarray(items.ids, np.int64))
    candidate_keys = ("seed", "candidates_k", "subsample_m")
    prep_fingerprint = content_digest(
        json.dumps({"candidates": {k: getattr(config, k) for k in candidate_keys},
                    "method": method.prepare_settings()}, sort_keys=True),
        model.digest(), item_digest, queries.images, queries.x, queries.text_states,
        json.dumps([list(queries.captions), list(queries.splits)]))
    fingerprint = content_digest(prep_fingerprint, json.dumps(dataclasses.asdict(config), sort_keys=True),
                                 json.dumps(method.settings(), sort_keys=True))
    return prep_fingerprint, fingerprint


def _open_work(work: Path, run_info: dict[str, Any], *, overwrite: bool) -> None:
    """Claim ``work`` for the run described by ``run_info`` (written to ``work/run.json``).

    A folder holding another run (another fingerprint) is refused unless ``overwrite``; then only
    that run's per-query results go, and the caller's caches and the prepared inputs stay (they
    are reused when their own fingerprint still matches).
    """
    old = work / "run.json"
    if old.is_file():
        if json.loads(old.read_text(encoding="utf-8")).get("fingerprint") != run_info["fingerprint"]:
            if not overwrite:
                raise CheckpointError(
                    f"{work} holds a curation run with other inputs or settings; resume it with the same "
                    "ones, or pass overwrite=True (CLI: --overwrite) to start afresh")
            # Only this run's own results go; caches of the caller (e.g. text states) stay.
            shutil.rmtree(work / "results", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    write_json(old, run_info)


def _load_results(work: Path, n_queries: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """(item rows, scores) of every query, from its result file, and what was screened:
    ``{query id: {"exact_top": L, "exact_items": n}}`` for each query scored exactly only at its top."""
    results, screened = [], {}
    for q in range(n_queries):
        with np.load(result_path(work, q), allow_pickle=False) as r:
            results.append((r["item_rows"], r["score"]))
            if "exact" in r.files:
                screened[str(q)] = {"exact_top": int(r["exact_top"]), "exact_items": int(r["exact"].sum())}
    return results, screened


def _model_info(model: "DiffusionModel") -> dict[str, Any]:
    return {"path": str(Path(model.path).resolve()) if model.path else None, "digest": model.digest()}


def _describe_run(model: "DiffusionModel", n_items: int, queries: QueryInputs, method: TeacherMethod,
                  config: CurationConfig) -> dict[str, Any]:
    """What ``teacher_set.json`` says of the run's inputs and settings (curate adds its timings)."""
    return {"n_items": n_items, "candidates_k": config.candidates_k, "subsample_m": config.subsample_m,
            **method.describe(model), "n_queries": len(queries.captions),
            "n_train_queries": list(queries.splits).count("train"),
            "n_test_queries": list(queries.splits).count("test"), "method": method.name,
            "method_settings": method.settings(), "config": dataclasses.asdict(config),
            "model": _model_info(model), "model_space": {"latent": bool(model.latent),
                                                         "shape": list(model.model_space_shape),
                                                         "prediction_type": model.prediction_type},
            "candidate_feature": FEATURE_DESCRIPTION}


def _score_all(work: Path, pending: list[int], *, method: TeacherMethod, model: "DiffusionModel",
               workers: int, progress: bool) -> dict[str, list[float]]:
    """Score the pending queries in this process or a pool; returns seconds per query by split."""
    splits = json.loads((work / "run.json").read_text(encoding="utf-8"))["splits"]
    seconds: dict[str, list[float]] = {"train": [], "test": []}
    if not pending:
        return seconds
    # Test queries (whole training set) first: they are the longest tasks, so the pool balances better.
    pending = sorted(pending, key=lambda q: (splits[q] != "test", q))
    bar = make_progress(total=len(pending), desc="teacher queries", unit="query", disable=not progress)
    if workers == 1:
        worker = Worker(work, method, model)
        for q in pending:
            _, sec = worker.run(q)
            seconds[splits[q]].append(sec)
            bar.update(1)
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=init_process, initargs=(str(work), method, 1)) as pool:
            for q, sec in pool.imap_unordered(run_in_process, pending, chunksize=1):
                seconds[splits[q]].append(sec)
                bar.update(1)
            # Let the workers exit rather than be terminated on leaving the block: a terminated
            # worker leaves its semaphores (tqdm's lock) to the resource tracker, which warns at exit.
            pool.close()
            pool.join()
    bar.close()
    return seconds
