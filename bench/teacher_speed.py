"""Teacher seconds per query on this machine: full training-set ranking and top-K candidate ranking.

Usage:
    python bench/teacher_speed.py --dataset runs/world --model runs/t2i [--fisher F] \
        [--queries 3] [--timesteps T] [--m M] [--draws D] [--no-bf16] [--threads 1] [--compare]

``--model`` is any diffusers pipeline folder (latent or pixel space). The items' model-space
inputs (VAE latents for a latent model) and text states are computed once and cached
(``--cache``), as curation does, so the per-query figures contain no VAE or text encode.

Measures, in one process with --threads torch threads (a curation worker uses 1): the query
gradient, the unlearning step, and scoring of M candidates and of all N items on the timestep
grid. Settings default to the curation defaults (fastattr.teacher.CurationConfig). With 2
workers on 2 cores, curation throughput is about 2 queries per the printed latency.
--compare also checks, on a random subset of items, how well the default settings, bf16
autocast, the diagonal Fisher and η/4, 4η keep the order of a reference with 4x the grid and
4x the draws: Spearman ρ and top-10 overlap.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description="teacher seconds per query")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--fisher", default=None)
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--m", type=int, default=None)
    parser.add_argument("--draws", type=int, default=None)
    parser.add_argument("--eta", type=float, default=None)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast scoring")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--compare-items", type=int, default=512)
    parser.add_argument("--cache", default=None, help="cache of item inputs (default: a temporary folder)")
    parser.add_argument("--sample-steps", type=int, default=25)
    args = parser.parse_args()
    from fastattr.teacher.curate import CurationConfig

    defaults = CurationConfig()
    for name, value in (("timesteps", defaults.n_timesteps), ("m", defaults.subsample_m or 48),
                        ("draws", defaults.query_draws), ("eta", defaults.eta), ("bf16", defaults.bf16)):
        if getattr(args, name) is None:
            setattr(args, name, value)

    import torch

    torch.set_num_threads(args.threads)
    import tempfile

    from fastattr.teacher.ekfac import load_fisher
    from fastattr.teacher.fisher import fit_fisher
    from fastattr.teacher.inputs import dataset_inputs
    from fastattr.teacher.pipeline import open_inputs
    from fastattr.teacher.scoring import grid_losses, item_noise, scores_from_losses, timestep_grid
    from fastattr.teacher.unlearn import apply_delta, query_gradient, unlearning_delta
    from fastattr.world import held_out_captions

    ds, model = open_inputs(args.dataset, args.model, progress=False)
    n = len(ds)
    t0 = time.perf_counter()
    x_np, text_np, _ = dataset_inputs(model, ds, args.cache or tempfile.mkdtemp(), progress=False)
    x, text = torch.from_numpy(np.array(x_np)), torch.from_numpy(np.array(text_np))
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fisher = load_fisher(args.fisher) if args.fisher else fit_fisher(model, x, text, progress=False)
    fisher_s = time.perf_counter() - t0
    captions = held_out_captions(args.queries, 0)
    t0 = time.perf_counter()
    q_images = model.to_model_space(model.generate(captions, seed=0, steps=args.sample_steps))
    sample_s = (time.perf_counter() - t0) / args.queries
    q_text = model.encode_prompts(captions)

    def scored(ts: torch.Tensor, rows: np.ndarray, delta: dict, bf16: bool = args.bf16,
               keep: dict | None = None) -> np.ndarray:
        idx = torch.from_numpy(rows)
        noise = item_noise(ds.item_ids[rows], ts, tuple(x.shape[1:]), seed=0)
        common = dict(batch_size=args.batch_size, autocast_bf16=bf16)
        before = grid_losses(model, x[idx], text[idx], noise, ts, **common)
        with apply_delta(model, delta):
            after = grid_losses(model, x[idx], text[idx], noise, ts, **common)
        if keep is not None:
            keep["before"] = before
        return scores_from_losses(after, before).numpy()

    ts = timestep_grid(args.timesteps, model.num_train_timesteps)
    all_rows = np.arange(n)
    timings: dict[str, list[float]] = {"gradient": [], "score_m": [], "score_all": []}
    compare: list[dict] = []
    for q in range(args.queries):
        t0 = time.perf_counter()
        grads = query_gradient(model, q_images[q], q_text[q], n_draws=args.draws, seed=q)
        delta = unlearning_delta(fisher, grads, eta=args.eta, n_train=n)
        timings["gradient"].append(time.perf_counter() - t0)
        rows_m = np.sort(np.random.default_rng(q).choice(n, size=args.m, replace=False))
        t0 = time.perf_counter()
        idx = torch.from_numpy(rows_m)
        noise = item_noise(ds.item_ids[rows_m], ts, tuple(x.shape[1:]), seed=0)
        with apply_delta(model, delta):  # after-losses only: the before-losses are cached per item
            grid_losses(model, x[idx], text[idx], noise, ts, batch_size=args.batch_size, autocast_bf16=args.bf16)
        timings["score_m"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        keep: dict = {}
        tau = scored(ts, all_rows, delta, keep=keep)
        # scored() runs before and after; a curation run pays only the after-pass per query.
        timings["score_all"].append((time.perf_counter() - t0) / 2)
        # Cached before-losses come from other batch compositions than a query's candidates:
        # how far apart are the two computations of the same numbers, compared with |τ|?
        keep_m: dict = {}
        sub = scored(ts, rows_m, delta, keep=keep_m)
        batch_gap = float((keep_m["before"] - keep["before"][torch.from_numpy(rows_m)]).abs().max())
        timings.setdefault("batch_gap", []).append(batch_gap)
        timings.setdefault("tau_abs_median", []).append(float(np.median(np.abs(tau))))
        timings.setdefault("tau_gap_m", []).append(float(np.abs(sub - tau[rows_m]).max()))
        if args.compare:
            # On a fixed random subset of items (to bound the cost): does each cheaper setting keep
            # the order of the reference (fp32, 4x grid, 4x draws)?
            rows_c = np.sort(np.random.default_rng(100 + q).choice(n, size=min(n, args.compare_items), replace=False))
            grads4 = query_gradient(model, q_images[q], q_text[q], n_draws=4 * args.draws, seed=q)
            delta4 = unlearning_delta(fisher, grads4, eta=args.eta, n_train=n)
            ts4 = timestep_grid(4 * args.timesteps, model.num_train_timesteps)
            ref = scored(ts4, rows_c, delta4, bf16=False)
            variants = {
                "default": scored(ts, rows_c, delta),
                "bf16": scored(ts, rows_c, delta, bf16=True),
                "fp32": scored(ts, rows_c, delta, bf16=False),
                "4x_grid": scored(ts4, rows_c, delta),
                "4x_draws": scored(ts, rows_c, delta4),
                "eta/4": scored(ts, rows_c, unlearning_delta(fisher, grads, eta=args.eta / 4, n_train=n)),
                "eta*4": scored(ts, rows_c, unlearning_delta(fisher, grads, eta=args.eta * 4, n_train=n)),
                "diag": scored(ts, rows_c, unlearning_delta(fisher, grads, eta=args.eta, n_train=n, kind="diag")),
            }
            top = set(np.argsort(-ref)[:10].tolist())
            compare.append({"query": q, "items": len(rows_c), **{
                name: {"spearman_vs_ref": round(_spearman(v, ref), 3),
                       "top10_overlap_vs_ref": len(top & set(np.argsort(-v)[:10].tolist())) / 10,
                       "spearman_vs_default": round(_spearman(v, variants["default"]), 3)}
                for name, v in variants.items()}})
    g, sm, sa = (float(np.mean(timings[k])) for k in ("gradient", "score_m", "score_all"))
    print(json.dumps({
        "model": str(args.model), "latent": bool(model.latent), "model_space_shape": list(model.model_space_shape),
        "n_items": n, "timesteps": args.timesteps, "m": args.m, "draws": args.draws, "bf16": args.bf16,
        "threads": args.threads,
        "nproc": os.cpu_count(), "loadavg": os.getloadavg(),
        "seconds_per_query_topk": round(g + sm, 3), "seconds_per_query_full": round(g + sa, 3),
        "breakdown_s": {"query_gradient": round(g, 3), "score_m": round(sm, 3), "score_all": round(sa, 3)},
        "forward_samples_per_s": round(n * args.timesteps / sa, 1),
        "once_per_run_s": {"item_inputs_and_text": round(encode_s, 1), "fit_fisher": round(fisher_s, 1),
                           "base_losses": round(sa, 1), "sample_per_query": round(sample_s, 3)},
        "before_loss_gap_across_batchings_max": max(timings["batch_gap"]),
        "tau_gap_across_batchings_max": max(timings["tau_gap_m"]),
        "tau_abs_median": float(np.median(timings["tau_abs_median"])),
        "compare": compare,
    }, indent=1))


if __name__ == "__main__":
    main()
