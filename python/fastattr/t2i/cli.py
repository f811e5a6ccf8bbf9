"""`fastattr t2i train` and `fastattr t2i sample`: train a pixel-space text-to-image model, draw from any pipeline."""

from __future__ import annotations

import argparse
import os

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `t2i` command group."""
    t2i = subparsers.add_parser("t2i", help="the tiny text-to-image diffusion model")
    sub = t2i.add_subparsers(dest="t2i_command", metavar="COMMAND")
    t2i.set_defaults(handler=lambda args: (t2i.print_help(), 2)[1])

    train = sub.add_parser(
        "train", help="train on a dataset folder",
        description="Train a pixel-space UNet2DConditionModel on a dataset folder; checkpoints "
                    "into OUT and resumes from it with --resume.",
    )
    train.add_argument("dataset", help="dataset folder in any layout fastattr reads (fastattr world make, "
                                       "items.jsonl, a Hugging Face imagefolder, webdataset shards)")
    train.add_argument("out", help="model folder to write")
    train.add_argument("--preset", choices=["demo", "full", "tiny"], default=None,
                       help="model size, named as the world's (`fastattr world make --preset`): tiny (a smoke "
                            "run), demo, full; default: demo up to 16x16 images, full above. The UNet follows "
                            "the dataset's image size")
    train.add_argument("--image-size", type=int, default=None,
                       help="resize and centre-crop the images to this square side (default: the dataset's "
                            "size when its images are square and of one size)")
    train.add_argument("--steps", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None, dest="learning_rate")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--checkpoint-every", type=int, default=None)
    train.add_argument("--precision", choices=["fp32", "bf16"], default=None)
    train.add_argument("--text-encoder", default=None,
                       help="local path or hub id of a transformers text encoder "
                            "(default: the packaged all-MiniLM-L6-v2)")
    train.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in OUT")
    train.add_argument("--overwrite", action="store_true",
                       help="replace whatever is at OUT (by default only an existing model folder is replaced)")
    train.set_defaults(handler=_train)

    sample = sub.add_parser("sample", help="generate PNGs from prompts")
    sample.add_argument("model", help="diffusers pipeline folder (t2i train output or a user's own)")
    sample.add_argument("prompts", nargs="+", help="one or more prompts")
    sample.add_argument("--out", default="samples", help="folder for the PNGs")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--steps", type=int, default=25)
    sample.add_argument("--guidance", type=float, default=3.0)
    sample.add_argument("--scale", type=int, default=8, help="nearest-neighbour upscaling of the PNGs")
    sample.set_defaults(handler=_sample)


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .._atomic import check_replaceable
    from ..data import load_dataset
    from ..errors import DatasetError
    from .config import T2IConfig
    from .model import CONFIG_FILE
    from .trainer import train

    # Before decoding the dataset, which can take long for a big image folder.
    check_replaceable(Path(args.out), CONFIG_FILE, overwrite=args.overwrite, what="t2i model folder")
    ds = load_dataset(args.dataset, image_size=args.image_size, progress=True)
    h, w = ds.image_size
    if h != w:
        raise DatasetError(f"the dataset's images are {h}x{w}; pass --image-size N to centre-crop them to N x N")
    preset = args.preset or ("demo" if h <= 16 else "full")
    overrides = {"image_size": h,
        "steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "seed": args.seed, "checkpoint_every": args.checkpoint_every, "precision": args.precision,
        "text_encoder": args.text_encoder,
    }
    config = T2IConfig.preset(preset, **overrides)
    train(ds, args.out, config, resume=args.resume, threads=args.threads, overwrite=args.overwrite)
    return 0


def _sample(args: argparse.Namespace) -> int:
    from PIL import Image

    from .._atomic import atomic_open
    from ..models import load_diffusion_model

    model = load_diffusion_model(args.model)
    images = model.generate(args.prompts, seed=args.seed, steps=args.steps, guidance_scale=args.guidance)
    os.makedirs(args.out, exist_ok=True)
    for i, (prompt, image) in enumerate(zip(args.prompts, images)):
        path = os.path.join(args.out, f"{i:03d}.png")
        img = Image.fromarray(image)
        if args.scale > 1:
            img = img.resize((img.width * args.scale, img.height * args.scale),
                             Image.Resampling.NEAREST)
        with atomic_open(path, "wb") as handle:
            img.save(handle, format="PNG")
        print(f"{path}\t{prompt}")
    return 0
