"""`fastattr teacher fit-fisher` and `fastattr teacher curate`: the teacher stage on folders."""

from __future__ import annotations

import argparse

from ..data.layouts import CAPTION_HELP, DATASET_HELP

__all__ = ["register", "DATASET_HELP", "MODEL_HELP", "PROMPTS_HELP", "QUERY_IMAGES_HELP", "CAPTION_HELP"]

MODEL_HELP = ("diffusers pipeline folder (model_index.json, unet/, text_encoder/, tokenizer/, scheduler/, "
              "and vae/ for latent models), e.g. what `fastattr t2i train` or save_pretrained writes")
PROMPTS_HELP = ("query prompts, one a line (or JSON lines {\"prompt\": ..., \"split\": \"train\"|\"test\"}); "
                "images are generated with the model, seeded. Default for the embedded world: its held-out captions")
QUERY_IMAGES_HELP = ("logged generations to attribute: an imagefolder (image files + metadata.jsonl/.csv with "
                     "file_name and the prompt in the caption column)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `teacher` command group."""
    teacher = subparsers.add_parser("teacher", help="AbU+ teacher: Fisher fitting and teacher-set curation")
    sub = teacher.add_subparsers(dest="teacher_command", metavar="COMMAND")

    fit = sub.add_parser(
        "fit-fisher", help="fit the K/V Fisher (diagonal + EK-FAC) of a T2I model over its training set",
        description="Fit the diagonal and EK-FAC Fisher of the cross-attention key/value weights from "
        "per-sample gradients of the training loss; write one safetensors file.")
    fit.add_argument("--dataset", required=True, help=DATASET_HELP)
    fit.add_argument("--model", required=True, help=MODEL_HELP)
    fit.add_argument("--caption-column", default=None, help=CAPTION_HELP)
    fit.add_argument("--out", required=True, help="Fisher file to write, e.g. runs/fisher.safetensors")
    fit.add_argument("--draws-per-item", type=int, default=1, help="(timestep, noise) draws per item (default 1)")
    fit.add_argument("--batch-size", type=int, default=64)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    fit.set_defaults(handler=_fit)

    cur = sub.add_parser(
        "curate", help="rank training items for generated queries (Algorithm 1); resumable, parallel",
        description="Generate query images from prompts (or read logged generations), unlearn each one "
        "(AbU+/AbU) and rank its candidates by the loss increase. A rerun continues where a crashed "
        "run stopped.")
    cur.add_argument("--dataset", required=True, help=DATASET_HELP)
    cur.add_argument("--model", required=True, help=MODEL_HELP)
    cur.add_argument("--out", required=True, help="teacher-set folder to write")
    source = cur.add_mutually_exclusive_group()
    source.add_argument("--prompts", default=None, help=PROMPTS_HELP)
    source.add_argument("--query-images", default=None, help=QUERY_IMAGES_HELP)
    cur.add_argument("--caption-column", default=None, help=CAPTION_HELP)
    cur.add_argument("--fisher", default=None, help="Fisher file (default: fit one, cached in OUT/work)")
    cur.add_argument("--full", action="store_true",
                     help="full-size settings (1000+100 queries, K=1000, M=500, 16 timesteps, 512 draws)")
    cur.add_argument("--train-queries", type=int, default=None, help="queries with top-K candidates")
    cur.add_argument("--test-queries", type=int, default=None, help="queries ranked over the whole training set")
    cur.add_argument("--candidates-k", type=int, default=None, help="top-K candidates by the frozen feature")
    cur.add_argument("--subsample-m", type=int, default=None, help="uniform subsample of the K (0: keep all K)")
    cur.add_argument("--timesteps", type=int, default=None, help="size of the scoring timestep grid")
    cur.add_argument("--query-draws", type=int, default=None, help="(noise, timestep) draws for the query gradient")
    cur.add_argument("--eta", type=float, default=None, help="unlearning step size η (step = η/N · F⁻¹∇L)")
    cur.add_argument("--fisher-kind", choices=["ekfac", "diag"], default=None, help="AbU+ (ekfac) or AbU (diag)")
    cur.add_argument("--flip", action="store_true", help="also score flipped images and take the max")
    cur.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                     help="bf16 autocast for scoring (default on: 2x faster; --no-bf16 scores in fp32)")
    cur.add_argument("--screen", action=argparse.BooleanOptionalAction, default=None,
                     help="rank test queries by screening: exact scores for the items likely to reach the "
                     "top --exact-top, estimates below (experimental, default off)")
    cur.add_argument("--exact-top", type=int, default=None,
                     help="with --screen: how many top items must be exact "
                     "(default: the largest mAP cutoff, 3.4%% of N)")
    cur.add_argument("--batch-size", type=int, default=None)
    cur.add_argument("--seed", type=int, default=None)
    cur.add_argument("--sample-steps", type=int, default=25, help="DDIM steps to generate the query images")
    cur.add_argument("--guidance-scale", type=float, default=3.0)
    cur.add_argument("--fisher-draws-per-item", type=int, default=1)
    cur.add_argument("--workers", type=int, default=2, help="worker processes, one thread each (default 2)")
    cur.add_argument("--threads", type=int, default=None,
                     help="torch threads of the main process (default: all cores)")
    cur.add_argument("--overwrite", action="store_true", help="discard a previous run's results in OUT/work")
    cur.set_defaults(handler=_curate)
    teacher.set_defaults(handler=lambda args: (teacher.print_help(), 2)[1])


def _fit(args: argparse.Namespace) -> int:
    import os

    import torch

    from .pipeline import fit_fisher_on_folders

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    fisher = fit_fisher_on_folders(args.dataset, args.model, args.out, draws_per_item=args.draws_per_item,
                                   batch_size=args.batch_size, seed=args.seed, caption_column=args.caption_column)
    print(f"wrote the Fisher of {len(fisher.layers)} key/value layers ({fisher.n_samples} samples) to {args.out}")
    return 0


def _config(args: argparse.Namespace):  # noqa: ANN202 - CurationConfig, imported lazily
    from .curate import CurationConfig

    overrides = {
        "n_train_queries": args.train_queries, "n_test_queries": args.test_queries,
        "candidates_k": args.candidates_k, "n_timesteps": args.timesteps, "query_draws": args.query_draws,
        "eta": args.eta, "fisher_kind": args.fisher_kind, "batch_size": args.batch_size, "seed": args.seed,
        "screen": args.screen, "exact_top": args.exact_top,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.subsample_m is not None:
        overrides["subsample_m"] = args.subsample_m or None
    if args.flip:
        overrides["flip"] = True
    if args.bf16 is not None:
        overrides["bf16"] = args.bf16
    return CurationConfig.full(**overrides) if args.full else CurationConfig(**overrides)


def _curate(args: argparse.Namespace) -> int:
    import os

    import torch

    from .pipeline import curate_folders
    from .queries import QuerySpec

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    spec = QuerySpec(prompts=args.prompts, query_images=args.query_images, caption_column=args.caption_column)
    curate_folders(args.dataset, args.model, args.out, config=_config(args), fisher=args.fisher,
                   queries=spec, caption_column=args.caption_column,
                   fisher_draws_per_item=args.fisher_draws_per_item, sample_steps=args.sample_steps,
                   guidance_scale=args.guidance_scale, workers=args.workers, overwrite=args.overwrite)
    return 0
