"""Student vs teacher on the embedded world: SDK seconds per query against the teacher's full ranking."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[2]

__all__ = ["add_arguments", "measure", "run_teacher_speed", "standin_bundle", "teacher_seconds_per_query", "world_query"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the student-vs-teacher part."""
    group = parser.add_argument_group("embedded world (student vs teacher)")
    group.add_argument("--world-bundle", default=os.environ.get("FASTATTR_WORLD_BUNDLE"),
                       help="bundle of the embedded world (e.g. the demo's); or $FASTATTR_WORLD_BUNDLE")
    group.add_argument("--teacher-json", default=os.environ.get("FASTATTR_TEACHER_JSON"),
                       help="result JSON of bench/teacher_speed.py (teacher seconds per query, full ranking)")
    group.add_argument("--teacher-seconds", type=float, default=None,
                       help="teacher seconds per query measured elsewhere (overrides --teacher-json)")
    group.add_argument("--teacher-model", default=os.environ.get("FASTATTR_TEACHER_MODEL"),
                       help="a trained embedded-world T2I model folder: run bench/teacher_speed.py on it now")
    group.add_argument("--teacher-dataset", default=None,
                       help="the dataset that model was trained on (default: the benchmark's demo-preset world)")
    group.add_argument("--teacher-fisher", default=None,
                       help="that model's fitted Fisher (else bench/teacher_speed.py fits one first)")
    group.add_argument("--teacher-queries", type=int, default=2, help="queries bench/teacher_speed.py times")
    group.add_argument("--demo-work", default=os.environ.get("FASTATTR_DEMO_WORK", str(_REPO / ".fastattr" / "demo")),
                       help="a `fastattr demo` work folder: its bundle and teacher timings are used when present")


def _teacher_figure(data: dict[str, Any], where: str) -> float:
    # bench/teacher_speed.py reports the full ranking as "seconds_per_query_full": the query gradient,
    # the unlearning step and the after-unlearning losses of all N items (the before-losses are cached).
    for key in ("seconds_per_query_full", "seconds_per_query"):
        if isinstance(data.get(key), (int, float)):
            return float(data[key])
    raise ValueError(f"{where} has no 'seconds_per_query_full' figure; is it bench/teacher_speed.py's output?")


def _parse_json_output(text: str, where: str) -> dict[str, Any]:
    """The last JSON object a script printed, starting at a line that opens with '{'.

    Example:
        >>> _parse_json_output('log line\\n{"a": 1}\\n', "x")
        {'a': 1}
    """
    lines = text.splitlines()
    for start in reversed([i for i, line in enumerate(lines) if line.startswith("{")]):
        try:
            value = json.loads("\n".join(lines[start:]))
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError(f"{where} holds no JSON object")


def run_teacher_speed(model: str, dataset: str, *, queries: int, threads: int, fisher: str | None = None) -> dict[str, Any]:
    """Run the teacher helper's bench/teacher_speed.py in a child process and return its JSON."""
    import sys

    script = Path(__file__).resolve().parents[1] / "teacher_speed.py"
    cmd = [sys.executable, str(script), "--dataset", dataset, "--model", model, "--queries", str(queries),
           "--threads", str(threads)] + (["--fisher", fisher] if fisher else [])
    print(f"[bench] teacher: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return _parse_json_output(done.stdout, "bench/teacher_speed.py's output")


def teacher_seconds_per_query(args: argparse.Namespace) -> tuple[float | None, dict[str, Any]]:
    """The teacher's seconds per query (full ranking of the training set) and where it came from."""
    if args.teacher_seconds is not None:
        return float(args.teacher_seconds), {"source": "--teacher-seconds"}
    if args.teacher_json:
        data = _parse_json_output(Path(args.teacher_json).read_text(), str(args.teacher_json))
        return _teacher_figure(data, str(args.teacher_json)), {"source": str(args.teacher_json), "teacher": data}
    demo_set = Path(args.demo_work) / "teacher" / "teacher_set.json"
    if not args.teacher_model and demo_set.is_file():
        # The demo's own curation: seconds per test query, each ranked over the whole training set
        # by one curation worker (one torch thread; two workers share the two cores).
        meta = json.loads(demo_set.read_text())
        test_s = (meta.get("seconds_per_query") or {}).get("test")
        if isinstance(test_s, (int, float)):
            return float(test_s), {"source": f"{demo_set} (seconds_per_query.test, measured during curation)",
                                   "teacher": {k: meta.get(k) for k in ("n_items", "timesteps", "method", "config",
                                                                        "seconds_per_query")}}
    if args.teacher_model:
        dataset = args.teacher_dataset or str(Path(args.cache) / "world-2500-16" / "dataset")
        try:
            data = run_teacher_speed(args.teacher_model, dataset, queries=args.teacher_queries, threads=args.threads,
                                     fisher=args.teacher_fisher)
        except subprocess.CalledProcessError as exc:
            # The student side is still worth reporting; the teacher's failure is recorded, not hidden.
            return None, {"source": "bench/teacher_speed.py", "error": (exc.stderr or "")[-2000:]}
        return _teacher_figure(data, "bench/teacher_speed.py"), {"source": "bench/teacher_speed.py (run now)",
                                                                 "teacher": data}
    return None, {"source": None, "note": "no teacher figure: give --teacher-model, --teacher-json or --teacher-seconds"}


def world_query(image_size: tuple[int, int], *, seed: int = 0) -> tuple[bytes, str]:
    """A held-out (never trained on) world image as PNG bytes, and its caption."""
    from PIL import Image

    from fastattr.world.generate import held_out_attributes
    from fastattr.world.palette import caption_for
    from fastattr.world.raster import render

    attributes = held_out_attributes(1, seed=seed)[0]
    rgb = render(attributes, image_size[0])
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue(), caption_for(attributes)


def standin_bundle(cache: Path, *, n_items: int = 2500, image_size: int = 16, progress: bool = True) -> Path:
    """A bundle of the demo-sized embedded world whose student has the demo's architecture, untrained.

    Speed depends on the architecture, not on trained weights, so when no demo bundle is at hand
    the benchmark builds this one with the project's own stages: ``make_world`` (demo preset),
    the student's stand-in ViT (``standin_vit_config``, the size ``pretrain_image_encoder`` uses)
    + the shipped MiniLM text encoder + the default ``Head``, ``save_student``,
    ``fastattr.export.export_student`` and ``fastattr.bundle_build.build_bundle``. Cached in ``cache``.
    """
    from fastattr.bundle import MANIFEST
    from fastattr.export import export_student
    from fastattr.bundle_build import build_bundle
    from fastattr.student.embedder import save_student
    from fastattr.student.encoders import image_encoder_from_config, standin_vit_config
    from fastattr.student.head import Head
    from fastattr.student.pipeline import prepare_text_encoder
    from fastattr.student.train import TrainConfig
    from fastattr.world import load_dataset, make_world

    root = cache / f"world-{n_items}-{image_size}"
    bundle = root / "bundle"
    if (bundle / MANIFEST).is_file():
        return bundle
    data_dir = root / "dataset"
    data = load_dataset(data_dir) if (data_dir / "dataset.json").is_file() else make_world(
        data_dir, n_items=n_items, image_size=image_size, progress=progress)
    image = image_encoder_from_config(standin_vit_config(image_size), source="standin-untrained")
    text = prepare_text_encoder(None, list(data.captions))
    config = TrainConfig()
    head = Head(image.dim + text.dim, hidden=config.hidden, dim=config.dim, n_hidden=config.n_hidden)
    save_student(root / "student", image, text, head, training={"note": "untrained stand-in for speed benchmarks"})
    export_student(root / "student", root / "export")
    build_bundle(bundle, embedder=root / "export", dataset=data_dir, progress=progress,
                 provenance={"note": "bench/query stand-in: untrained student of the demo's architecture"})
    return bundle


def measure(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Time the SDK on the embedded world's bundle and compare with the teacher; adds a config row."""
    from fastattr import Attributor
    from .run import _entry
    from .stages import sdk_breakdown
    from .timing import time_interleaved

    teacher_s, teacher_info = teacher_seconds_per_query(args)
    out: dict[str, Any] = {"teacher_seconds_per_query": teacher_s, "teacher": teacher_info}
    bundle = args.world_bundle
    demo_bundle = Path(args.demo_work) / "bundle"
    if bundle:
        out["student"] = "the given bundle"
    elif (demo_bundle / "manifest.json").is_file():
        bundle = str(demo_bundle)
        out["student"] = f"the demo's trained student ({demo_bundle})"
    else:
        bundle = standin_bundle(Path(args.cache))
        out["student"] = ("stand-in: the demo's student architecture (world ViT stand-in + MiniLM + default head) "
                          "with untrained weights; speed does not depend on the weights")
    attributor = Attributor.load(bundle, device="cpu", threads=args.threads)
    image, prompt = world_query(attributor.bundle.spec.size)
    rounds = max(args.n, 200)  # a world query takes about a millisecond: more rounds cost nothing
    e2e = time_interleaved({"sdk": lambda: attributor.query(image, prompt, k=args.k)}, n=rounds, warmup=args.warmup)["sdk"]
    stages = sdk_breakdown(attributor, image, prompt, k=args.k, n=rounds, warmup=args.warmup)
    results["configs"].append(_entry(f"SDK fp32, embedded world, N={len(attributor):,}", len(attributor), e2e, stages))
    out.update({"bundle": str(bundle), "n_items": len(attributor), "sdk_end_to_end": e2e.to_dict(),
                "sdk_seconds_per_query": e2e.p50_ms / 1e3})
    if teacher_s is not None:
        out["speedup"] = round(teacher_s / (e2e.p50_ms / 1e3), 1)
    return out
