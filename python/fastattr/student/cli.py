"""`fastattr student train` and `fastattr student eval`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..data.layouts import add_dataset_arguments, dataset_from_args

__all__ = ["register"]


def _threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(int(args.threads))


def _train(args: argparse.Namespace) -> int:
    _threads(args)
    from pathlib import Path

    from .._atomic import check_replaceable
    from .pipeline import default_config, train_student

    # Before decoding the dataset, which can take long for a big image folder.
    check_replaceable(Path(args.out), "student.json", overwrite=args.overwrite, what="student checkpoint")
    config = default_config(steps=args.steps, batch_size=args.batch_size, lr=args.lr, hidden=args.hidden,
                            dim=args.dim, seed=args.seed, objective=args.objective,
                            skip=False if args.no_skip else None)
    log = train_student(dataset_from_args(args), args.teacher_set, args.out, image_encoder=args.image_encoder,
                        text_encoder=args.text_encoder, max_length=args.max_length, cache_dir=args.cache_dir,
                        config=config, pretrain_steps=args.pretrain_steps, progress=not args.quiet,
                        overwrite=args.overwrite)
    chosen = log.get("chosen", {})
    print(f"student: {args.out} (head {log['seconds']:.1f} s, total {log['seconds_total']:.1f} s; "
          f"held-out loss {chosen.get('loss', float('nan')):.4f}, mAP {chosen.get('map', float('nan')):.3f} "
          f"at step {chosen.get('step')})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    _threads(args)
    from .evaluate import evaluate_student

    results = evaluate_student(args.student, dataset_from_args(args), args.teacher_set, args.out, cache_dir=args.cache_dir,
                               ablation=not args.no_ablation, progress=not args.quiet)
    header = "method".ljust(12) + "".join(f"mAP(L={c})".rjust(18) for c in results["L"])
    print(header)
    for name, row in results["methods"].items():
        print(name.ljust(12) + "".join(f"{r['mean']:.3f} ± {r['se']:.3f}".rjust(18) for r in row["map"]))
    print(f"margin over best untuned ({results['best_untuned']}) at L={results['L'][1]}: "
          f"{results['margin_at_middle']:+.3f}; wrote {args.out}/results.json and plot.png")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def register(subparsers: Any) -> None:
    """Add the `student` command group to the `fastattr` parser."""
    group = subparsers.add_parser("student", help="train and evaluate the fast attribution embedder")
    sub = group.add_subparsers(dest="student_command", metavar="COMMAND")
    group.set_defaults(handler=lambda _args: group.print_help() or 2)

    train = sub.add_parser("train", help="train the head on frozen features from a teacher set",
                           description="Distill the teacher's rankings into an embedder (DESIGN §3).")
    add_dataset_arguments(train)
    train.add_argument("--teacher-set", required=True, help="teacher set folder (fastattr teacher curate)")
    train.add_argument("--out", required=True, help="student checkpoint folder to write")
    train.add_argument("--image-encoder", default="world",
                       help="transformers image model folder or hub id (ViT, DINOv2, CLIP); 'world' pretrains "
                            "a small ViT on the dataset's attributes (default)")
    train.add_argument("--text-encoder", default=None,
                       help="transformers text model folder or hub id (default: the shipped all-MiniLM-L6-v2)")
    train.add_argument("--max-length", type=int, default=None, help="token length (default: fit the captions)")
    train.add_argument("--pretrain-steps", type=int, default=500, help="steps of the 'world' image encoder")
    train.add_argument("--steps", type=int, default=None, help="optimizer steps of the head")
    train.add_argument("--batch-size", type=int, default=None, help="pairs per step (default 4096)")
    train.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 1e-3)")
    train.add_argument("--hidden", type=int, default=None, help="hidden width of the head's MLP")
    train.add_argument("--dim", type=int, default=None, help="embedding dimension")
    train.add_argument("--no-skip", action="store_true",
                       help="the paper's plain MLP head, without the linear skip path started at PCA")
    train.add_argument("--objective", choices=("rank", "regression"), default=None,
                       help="rank (default) or the absolute-score regression ablation")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--cache-dir", default=None, help="feature cache (default: <out>/../.student-cache)")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--overwrite", action="store_true",
                       help="replace whatever is at --out (by default only an existing student checkpoint is replaced)")
    train.set_defaults(handler=_train)

    ev = sub.add_parser("eval", help="mAP of the student and the baselines on the test queries",
                        description="mAP(L) over the whole training set (DESIGN §4); writes results.json + plot.png.")
    ev.add_argument("--student", required=True, help="student checkpoint folder")
    add_dataset_arguments(ev)
    ev.add_argument("--teacher-set", required=True, help="teacher set folder with test queries")
    ev.add_argument("--out", required=True, help="folder for results.json and plot.png")
    ev.add_argument("--cache-dir", default=None, help="feature cache (default: <student>/../.student-cache)")
    ev.add_argument("--no-ablation", action="store_true", help="skip training the regression ablation")
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ev.add_argument("--json", action="store_true", help="also print the results JSON")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(handler=_eval)
