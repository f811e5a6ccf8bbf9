"""`fastattr build`: a user's diffusers pipeline, dataset and prompts (or logged generations) → a bundle."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `fastattr build` to the CLI."""
    from .teacher.cli import CAPTION_HELP, DATASET_HELP, MODEL_HELP, PROMPTS_HELP, QUERY_IMAGES_HELP

    parser = subparsers.add_parser(
        "build", help="model + dataset + prompts or logged generations → a bundle (every stage cached)",
        description="fit-fisher → teacher curate → student train → eval → export → bundle, each stage cached "
        "under --work and resumable: rerun the same command after a crash and it continues.")
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--dataset", required=True, help=DATASET_HELP)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompts", default=None, help=PROMPTS_HELP)
    source.add_argument("--query-images", default=None, help=QUERY_IMAGES_HELP)
    parser.add_argument("--out", required=True, help="bundle folder to write")
    from .build import BUILD_PRESET_ALIASES, BUILD_PRESETS

    # The names of `world make --preset` and `t2i train --preset`; the former names still parse.
    parser.add_argument("--preset", choices=list(BUILD_PRESETS), default="demo",
                        type=lambda name: BUILD_PRESET_ALIASES.get(name, name),
                        help="stage sizes, named as the world's and the T2I model's: tiny (a smoke run of "
                             "seconds on a tiny model; formerly quick), demo (the default; formerly default), "
                             "full (paper-like)")
    parser.add_argument("--train-queries", type=int, default=None, help="teacher queries for training the student")
    parser.add_argument("--test-queries", type=int, default=None,
                        help="teacher queries ranked over the whole training set, for evaluation")
    parser.add_argument("--image-encoder", default=None,
                        help="frozen image encoder of the student: transformers folder or hub id (DINOv2, ViT, "
                             "CLIP vision); default for the embedded world: its pretrained stand-in")
    parser.add_argument("--text-encoder", default=None,
                        help="frozen text encoder of the student (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--caption-column", default=None, help=CAPTION_HELP)
    parser.add_argument("--work", default=None, help="stage cache folder (default: OUT.build beside the bundle)")
    parser.add_argument("--workers", type=int, default=1, help="teacher worker processes (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--overwrite", action="store_true",
                        help="rebuild a --work folder made for other inputs, and replace whatever is at --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import os

    import torch

    from .build import BUILD_PRESETS, build, map_table, print_table
    from .teacher.queries import QuerySpec

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    settings = BUILD_PRESETS[args.preset].with_queries(args.train_queries, args.test_queries)
    spec = QuerySpec(prompts=args.prompts, query_images=args.query_images, caption_column=args.caption_column)
    summary = build(args.model, args.dataset, args.out, queries=spec, settings=settings, work=args.work,
                    image_encoder=args.image_encoder, text_encoder=args.text_encoder,
                    caption_column=args.caption_column, workers=args.workers, overwrite=args.overwrite,
                    progress=not args.quiet)
    results = summary["results"]
    print(f"\nevaluation on {results['n_test_queries']} test queries, {results['n_items']} training items "
          "(teacher top-L as positives):")
    print_table(map_table(results))
    print(f"\nbundle: {summary['bundle']}  (stages cached in {summary['work']}; {summary['total_s']:.1f} s)")
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k not in ("teacher",)}, indent=2, default=str))
    return 0
