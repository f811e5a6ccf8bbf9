"""`fastattr query BUNDLE IMAGE "PROMPT"`: attribute one generated image, as a table, JSON or HTML report."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

__all__ = ["register", "run_query"]


def run_query(args: argparse.Namespace) -> int:
    """Handler of `fastattr query`."""
    from .attributor import Attributor
    from .errors import InputError
    from .preprocess import to_rgb_uint8

    attributor = Attributor.load(args.bundle, device=args.device, threads=args.threads, verify=args.verify)
    image = to_rgb_uint8(args.image, where=f"image {args.image!r}")
    try:
        exclude = [int(x) for x in args.exclude.split(",") if x.strip()] if args.exclude else None
    except ValueError:
        raise InputError(f"--exclude must be comma-separated item ids, got {args.exclude!r}") from None
    start = time.perf_counter()
    hits = attributor.query(image, args.prompt, k=args.k, exclude=exclude)
    latency_ms = (time.perf_counter() - start) * 1e3
    if args.json:
        print(json.dumps({"bundle": str(attributor.bundle.root), "device": attributor.device, "prompt": args.prompt,
                          "latency_ms": round(latency_ms, 3), "results": [h.to_dict() for h in hits]}, indent=2))
    else:
        print(f"top {len(hits)} of {len(attributor)} training items ({attributor.device}, {latency_ms:.1f} ms)")
        for hit in hits:
            print(f"{hit.rank:>4}  {hit.score:7.4f}  item {hit.item_id:<8} {hit.caption}")
    if args.html:
        from .report import bundle_thumbnails, write_report

        path = write_report(
            args.html, image, args.prompt, hits, thumbnails=bundle_thumbnails(attributor.bundle, hits),
            meta={"bundle": attributor.bundle.root.name, "items": len(attributor), "device": attributor.device,
                  "latency": f"{latency_ms:.1f} ms"},
        )
        if not args.json:
            print(f"wrote {path}")
    return 0


def register(subparsers: Any) -> None:
    """Add `fastattr query` to the CLI."""
    parser = subparsers.add_parser(
        "query", help="attribute a generated image to training items",
        description="Rank the training items of a bundle by their influence on IMAGE generated from PROMPT.",
    )
    parser.add_argument("bundle", help="bundle folder (from `fastattr bundle build`)")
    parser.add_argument("image", help="the generated image file (PNG, JPEG, ...)")
    parser.add_argument("prompt", help="the prompt that generated it")
    parser.add_argument("-k", type=int, default=10, help="number of training items to return (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--html", metavar="REPORT.html", help="also write a static HTML report")
    parser.add_argument("--exclude", metavar="ID,ID", help="comma-separated item ids never to return (opt-outs)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--verify", choices=("full", "sizes"), default="full", help="bundle verification on load")
    parser.set_defaults(handler=run_query)
