"""`fastattr demo`: the whole pipeline on the embedded world, each stage cached under a work folder.

world → T2I → teacher → student (+ evaluation) → export → index (bundle) → query of a freshly
generated image. A stage whose output folder is complete is skipped, so a second run only
generates a new image and queries it. Every stage writes atomically or resumes (t2i, teacher),
so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from ._atomic import write_json
from .build import BUILD_PRESETS, BuildSettings, Stages, build, map_table, print_table
from .errors import InputError

__all__ = ["PRESETS", "default_work", "run_demo", "register"]

# Sizes per preset: "stages" names the world, T2I and build presets (one name means one size in
# all three), "build" overrides the build's stage sizes. "demo" is the stages' own demo preset
# (sized by their owners for the 15-minute bar on 2 cores); "eval" is the same world and T2I model
# with a teacher set big enough to measure the student (4x the train queries, 16 test queries
# instead of 4; about 40 minutes); "tiny" is a smoke run of about a minute.
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {"stages": "demo"},
    # The head trains the default 2000 steps here, not the demo's 1000 (docs/student.md: mAP@21
    # 0.428 vs 0.471 on this preset).
    "eval": {"stages": "demo",
             "build": BuildSettings(teacher={"n_train_queries": 512, "n_test_queries": 16}, pretrain_steps=300)},
    "tiny": {"stages": "tiny"},
}
_STAMP = "demo.json"


def _done(path: Path, marker: str) -> bool:
    return (path / marker).is_file()


def _check_work(work: Path, preset: str, fresh: bool) -> None:
    stamp = work / _STAMP
    if fresh and work.exists():
        if not stamp.is_file() and any(work.iterdir()):
            raise InputError(f"--fresh would delete {work}, which is not a demo work folder (no {_STAMP}); "
                             "pick another --work")
        shutil.rmtree(work)
    if stamp.is_file():
        previous = json.loads(stamp.read_text(encoding="utf-8")).get("preset")
        if previous != preset:
            raise InputError(f"{work} holds a '{previous}' demo, not '{preset}'; use --fresh or another --work")
    work.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"format": "fastattr-demo", "version": 1, "preset": preset})


def run_demo(
    work: str | os.PathLike[str] | None = None,
    *,
    preset: str = "demo",
    prompt: str | None = None,
    seed: int | None = None,
    k: int = 10,
    html: str | os.PathLike[str] | None = None,
    workers: int = 2,
    threads: int | None = None,
    fresh: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or reuse) every stage, then attribute a freshly generated image; returns a summary.

    ``work`` defaults to :func:`default_work` of the preset.

    Example:
        >>> summary = run_demo(".fastattr/demo-tiny", preset="tiny")  # doctest: +SKIP
        >>> summary["results"][0]["rank"]  # doctest: +SKIP
        0
    """
    if preset not in PRESETS:
        raise InputError(f"unknown demo preset {preset!r}; choose one of {sorted(PRESETS)}")
    stages = PRESETS[preset]["stages"]
    build_settings = PRESETS[preset].get("build", BUILD_PRESETS[stages])
    if not progress:
        try:  # transformers draws its own "Loading weights" bars; --quiet means none at all
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be at least 1, got {threads}")
        import torch

        # On a CPU shared with other jobs, torch threads that wait for each other were measured
        # up to 14x slower than one thread; --threads 1 is the remedy there.
        torch.set_num_threads(threads)
    work = Path(work if work is not None else default_work(preset))
    _check_work(work, preset, fresh)
    paths = {name: work / name for name in ("world", "t2i", "bundle")}
    started = time.perf_counter()
    stage = Stages(log)

    from .world import PRESETS as WORLD_PRESETS
    from .world import make_world

    world = WORLD_PRESETS[stages]
    stage("world", _done(paths["world"], "dataset.json"), lambda: make_world(
        paths["world"], n_items=world["n_items"], image_size=world["image_size"], seed=0, progress=progress))

    from .t2i import T2IConfig, train

    t2i_config = T2IConfig.preset(stages)
    state = paths["t2i"] / "train_state.json"
    t2i_done = state.is_file() and json.loads(state.read_text()).get("step", 0) >= t2i_config.steps
    stage("t2i", t2i_done, lambda: train(paths["world"], paths["t2i"], t2i_config, resume=True,
                                         threads=threads, progress=progress, log=log))

    # The embedded world goes through the same path as a user's model and data (`fastattr build`).
    summary = build(paths["t2i"], paths["world"], paths["bundle"], settings=build_settings, work=work,
                    workers=workers, provenance={"t2i": t2i_config.to_dict(), "demo_preset": preset},
                    progress=progress, log=log)
    timings = {**stage.timings, **summary["timings"]}
    results, teacher_meta = summary["results"], summary["teacher"]
    return _attribute(work, paths, results, teacher_meta, prompt=prompt, seed=seed, k=k, html=html,
                      timings=timings, started=started, log=log)


def _attribute(work: Path, paths: dict[str, Path], results: dict[str, Any], teacher_meta: dict[str, Any],
               *, prompt: str | None, seed: int | None, k: int,
               html: str | os.PathLike[str] | None, timings: dict[str, float], started: float,
               log: Callable[[str], None]) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from .attributor import Attributor
    from .models import load_diffusion_model
    from .report import bundle_thumbnails, write_report
    from .world import held_out_captions

    if prompt is None:
        # A held-out caption the teacher never used for its queries: neither trained on nor distilled.
        prompt = held_out_captions(int(teacher_meta.get("n_queries", 0)) + 1, seed=0)[-1]
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    import torch

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    # One image from a tiny UNet: per-op work is too small to split, and on 2 busy cores a second
    # thread made sampling 17x more expensive in CPU time (0.4 s vs 6.9 s measured).
    torch.set_num_threads(1)
    try:
        image = load_diffusion_model(paths["t2i"]).generate([prompt], seed=seed, steps=25, guidance_scale=3.0)[0]
    finally:
        torch.set_num_threads(threads)
    generate_s = time.perf_counter() - t0
    Image.fromarray(image).save(work / "query.png")
    attributor = Attributor.load(paths["bundle"], device="auto")
    hits = attributor.query(image, prompt, k=k)
    latencies = []
    for _ in range(20):  # warm, then measure the steady state the SDK promises
        t1 = time.perf_counter()
        attributor.query(image, prompt, k=k)
        latencies.append((time.perf_counter() - t1) * 1e3)
    query_ms = float(np.median(latencies))
    teacher_s = (teacher_meta.get("seconds_per_query") or {}).get("test")
    speedup = teacher_s * 1e3 / query_ms if teacher_s else None

    log(f"\nprompt: {prompt!r} (seed {seed}, generated in {generate_s:.1f} s, saved to {work / 'query.png'})")
    log(f"top {len(hits)} of {len(attributor)} training items (device {attributor.device}):")
    for hit in hits:
        log(f"  {hit.rank:>3}  {hit.score:7.4f}  item {hit.item_id:<6} {hit.caption}")
    rows = map_table(results)
    log(f"\nevaluation on {results['n_test_queries']} test queries, {results['n_items']} training items "
        "(teacher top-L as positives):")
    print_table(rows, log)
    speed = [["", "per query"], ["student (SDK query)", f"{query_ms:.2f} ms"]]
    if teacher_s:
        speed.append(["teacher (AbU+, whole set)", f"{teacher_s:.2f} s"])
        speed.append(["speed-up", f"{speedup:,.0f}×"])
    log("\nspeed (this machine, load avg {:.1f}):".format(os.getloadavg()[0]))
    print_table(speed, log)
    report = Path(html) if html else work / "report.html"
    write_report(report, image, prompt, hits, thumbnails=bundle_thumbnails(attributor.bundle, hits),
                 title="fastattr demo: which training images made this one?",
                 meta={"seed": seed, "items": len(attributor), "device": attributor.device,
                       "query": f"{query_ms:.2f} ms"},
                 tables={"Student vs baselines (mAP, mean ± SE)": rows, "Speed": speed})
    total_s = time.perf_counter() - started
    log(f"\nreport: {report}\ntotal {total_s:.1f} s" + (f" (stages run: {timings})" if timings else " (all stages cached)"))
    return {"prompt": prompt, "seed": seed, "results": [h.to_dict() for h in hits], "query_ms": query_ms,
            "teacher_s": teacher_s, "speedup": speedup, "report": str(report), "timings": timings,
            "total_s": total_s}


def default_work(preset: str) -> str:
    """The work folder a preset uses unless told otherwise: one per preset, so none refuses another."""
    return ".fastattr/demo" if preset == "demo" else f".fastattr/demo-{preset}"


def _run(args: argparse.Namespace) -> int:
    summary = run_demo(args.work, preset=args.preset, prompt=args.prompt, seed=args.seed, k=args.k, html=args.html,
                       workers=args.workers, threads=args.threads, fresh=args.fresh, progress=not args.quiet)
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


def register(subparsers: Any) -> None:
    """Add `fastattr demo` to the CLI."""
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on the embedded world and attribute a fresh image",
        description="world → T2I → teacher → student → export → index → query, each stage cached under --work. "
        "Prints the attributions of a freshly generated image and the evaluation table; writes an HTML report.",
    )
    parser.add_argument("--work", default=None,
                        help="work folder for cached stages (default .fastattr/demo, or .fastattr/demo-PRESET)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                        help="sizes (eval: a teacher set big enough to measure the student, ~40 min; tiny: a smoke run)")
    parser.add_argument("--prompt", default=None, help="prompt of the fresh image (default: an unseen held-out caption)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fresh image (default: random, printed)")
    parser.add_argument("-k", type=int, default=10, help="training items to show")
    parser.add_argument("--html", default=None, help="report path (default WORK/report.html)")
    parser.add_argument("--workers", type=int, default=2, help="teacher worker processes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for training stages (default: all cores; 1 on a busy machine)")
    parser.add_argument("--fresh", action="store_true", help="delete the work folder first")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    parser.set_defaults(handler=_run)
