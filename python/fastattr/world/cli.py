"""`fastattr world make`: generate the embedded world into a dataset folder."""

from __future__ import annotations

import argparse
import time

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `world` command group."""
    from .generate import PRESETS

    world = subparsers.add_parser("world", help="the embedded procedural image–caption world")
    sub = world.add_subparsers(dest="world_command", metavar="COMMAND")
    make = sub.add_parser(
        "make", help="generate a dataset folder",
        description="Generate the procedural world (images.npy, items.jsonl, dataset.json).",
    )
    make.add_argument("out", help="dataset folder to write (replaced atomically)")
    make.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                      help="named size, the same name as the later stages' --preset: demo = 2500 items at "
                           "16x16 (default), full = 10000 at 32x32, tiny = 64 at 16x16 (a smoke run)")
    make.add_argument("--n-items", type=int, default=None, help="override the preset's item count")
    make.add_argument("--image-size", type=int, default=None, help="override the preset's side length")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--overwrite", action="store_true",
                      help="replace whatever is at OUT (by default only an existing dataset folder is replaced)")
    make.set_defaults(handler=_make)
    world.set_defaults(handler=lambda args: (world.print_help(), 2)[1])


def _make(args: argparse.Namespace) -> int:
    from .generate import PRESETS, make_world

    preset = PRESETS[args.preset]
    n_items = args.n_items if args.n_items is not None else preset["n_items"]
    image_size = args.image_size if args.image_size is not None else preset["image_size"]
    start = time.perf_counter()
    ds = make_world(args.out, n_items=n_items, seed=args.seed, image_size=image_size, progress=True,
                    overwrite=args.overwrite)
    print(f"wrote {len(ds)} items at {image_size}x{image_size} to {args.out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
