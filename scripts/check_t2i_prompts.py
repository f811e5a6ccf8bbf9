#!/usr/bin/env python
"""Check that a trained world T2I model follows its prompts' colours on held-out prompts.

For N held-out captions (main shape/colour/background combinations that no training item has),
sample one image each and read its colours with the world's palette: the bar is that the
prompted main-shape colour is the dominant non-background colour in >= 80 % of samples and the
prompted background colour wins in >= 90 %.

    python scripts/check_t2i_prompts.py --model .fastattr/t2i [--n 200] [--json out.json]
    python scripts/check_t2i_prompts.py --reference      # the checker on true renders (sanity)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="t2i model folder (fastattr t2i train output)")
    parser.add_argument("--reference", action="store_true",
                        help="score the true renders of the held-out prompts instead of samples")
    parser.add_argument("--n", type=int, default=200, help="number of held-out prompts")
    parser.add_argument("--seed", type=int, default=0, help="held-out prompt and sampling seed")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    parser.add_argument("--image-size", type=int, default=16, help="render size for --reference")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--grid", help="write the first 64 samples as a PNG grid here")
    parser.add_argument("--json", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if not args.model and not args.reference:
        parser.error("give --model or --reference")

    import numpy as np

    from fastattr.world import held_out_attributes, render
    from fastattr.world.colours import read_colours

    truth = held_out_attributes(args.n, seed=args.seed)
    from fastattr.world import caption_for

    captions = [caption_for(a) for a in truth]
    start = time.perf_counter()
    if args.reference:
        images = np.stack([render(a, args.image_size) for a in truth])
        source = "reference renders"
    else:
        import torch

        from fastattr.models import load_diffusion_model

        torch.set_num_threads(args.threads or os.cpu_count() or 1)
        model = load_diffusion_model(args.model)
        images = model.generate(captions, seed=args.seed, steps=args.steps,
                                guidance_scale=args.guidance, progress=True)
        source = args.model
    seconds = time.perf_counter() - start
    read = read_colours(images)
    colour_ok = [r[1] == a["shapes"][0]["colour"] for r, a in zip(read, truth)]
    bg_ok = [r[0] == a["background"] for r, a in zip(read, truth)]
    misses = Counter(
        (a["shapes"][0]["colour"], r[1]) for r, a, ok in zip(read, truth, colour_ok) if not ok
    )
    result = {
        "source": source, "n": args.n, "seed": args.seed, "steps": args.steps,
        "guidance": args.guidance, "main_colour_accuracy": float(np.mean(colour_ok)),
        "background_accuracy": float(np.mean(bg_ok)), "sampling_seconds": round(seconds, 2),
        "colour_misses": {f"{p}->{g}": c for (p, g), c in misses.most_common(10)},
        "load_avg": os.getloadavg(),
    }
    passed = result["main_colour_accuracy"] >= 0.8 and result["background_accuracy"] >= 0.9
    result["passed"] = passed
    print(json.dumps(result, indent=2))
    if args.grid:
        from PIL import Image

        k = min(64, len(images))
        cols = 8
        rows = (k + cols - 1) // cols
        h, w = images.shape[1:3]
        grid = np.zeros((rows * h, cols * w, 3), np.uint8)
        for i in range(k):
            grid[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = images[i]
        Image.fromarray(grid).resize((cols * 64, rows * 64), Image.Resampling.NEAREST).save(args.grid)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
