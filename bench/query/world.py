"""Student vs teacher on the embedded world: SDK seconds per query against the teacher's full ranking."""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "measure", "teacher_seconds_per_query", "world_query"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the student-vs-teacher part."""
    group = parser.add_argument_group("embedded world (student vs teacher)")
    group.add_argument("--world-bundle", default=os.environ.get("FASTATTR_WORLD_BUNDLE"),
                       help="bundle of the embedded world (e.g. the demo's); or $FASTATTR_WORLD_BUNDLE")
    group.add_argument("--teacher-json", default=os.environ.get("FASTATTR_TEACHER_JSON"),
                       help="result JSON of bench/teacher_speed.py (teacher seconds per query, full ranking)")
    group.add_argument("--teacher-seconds", type=float, default=None,
                       help="teacher seconds per query measured elsewhere (overrides --teacher-json)")


def teacher_seconds_per_query(args: argparse.Namespace) -> tuple[float | None, dict[str, Any]]:
    """The teacher's seconds per query (full ranking of the training set) and where it came from."""
    if args.teacher_seconds is not None:
        return float(args.teacher_seconds), {"source": "--teacher-seconds"}
    if args.teacher_json:
        data = json.loads(Path(args.teacher_json).read_text())
        value = data.get("seconds_per_query")
        if value is None:
            raise KeyError(f"{args.teacher_json} has no 'seconds_per_query' field")
        return float(value), {"source": str(args.teacher_json), "teacher": data}
    return None, {"source": None}


def world_query(image_size: tuple[int, int], *, seed: int = 0) -> tuple[bytes, str]:
    """A held-out (never trained on) world image as PNG bytes, and its caption."""
    from PIL import Image

    from fastattr.world.generate import held_out_attributes
    from fastattr.world.palette import caption_for
    from fastattr.world.render import render

    attributes = held_out_attributes(1, seed=seed)[0]
    rgb = render(attributes, image_size[0])
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue(), caption_for(attributes)


def measure(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Time the SDK on the embedded world's bundle and compare with the teacher; adds a config row."""
    from fastattr import Attributor
    from .run import _entry
    from .stages import sdk_stages
    from .timing import time_interleaved

    teacher_s, teacher_info = teacher_seconds_per_query(args)
    out: dict[str, Any] = {"teacher_seconds_per_query": teacher_s, "teacher": teacher_info}
    if not args.world_bundle:
        out["skipped"] = "no embedded-world bundle given (--world-bundle or $FASTATTR_WORLD_BUNDLE)"
        return out
    attributor = Attributor.load(args.world_bundle, device="cpu", threads=args.threads)
    image, prompt = world_query(attributor.bundle.spec.size)
    rounds = max(args.n, 200)  # a world query takes about a millisecond: more rounds cost nothing
    e2e = time_interleaved({"sdk": lambda: attributor.query(image, prompt, k=args.k)}, n=rounds, warmup=args.warmup)["sdk"]
    stages = time_interleaved(sdk_stages(attributor, image, prompt, k=args.k), n=rounds, warmup=args.warmup)
    results["configs"].append(_entry(f"SDK fp32, embedded world, N={len(attributor):,}", len(attributor), e2e, stages))
    out.update({"bundle": str(args.world_bundle), "n_items": len(attributor), "sdk_end_to_end": e2e.to_dict(),
                "sdk_seconds_per_query": e2e.p50_ms / 1e3})
    if teacher_s is not None:
        out["speedup"] = round(teacher_s / (e2e.p50_ms / 1e3), 1)
    return out
