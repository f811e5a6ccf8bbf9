"""`fastattr build` as a function: a user's model, dataset and queries → a bundle, every stage cached.

fit-fisher → teacher curate → student train → student eval → export → bundle. Each stage writes
its output atomically (or resumes, for the teacher) under a work folder, and a rerun skips the
stages whose output is complete, so a crashed build continues where it stopped. The demo runs
the same function on the embedded world's dataset and pipeline folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ._atomic import check_replaceable, write_json
from .errors import InputError

__all__ = ["BuildSettings", "BUILD_PRESETS", "BUILD_PRESET_ALIASES", "Stages", "build", "default_work_for",
           "map_table", "print_table"]


@dataclass
class BuildSettings:
    """Sizes of every stage of a build.

    Attributes:
        teacher: CurationConfig overrides (``full=True`` starts from ``CurationConfig.full()``).
        student: TrainConfig overrides of the student's head.
        pretrain_steps: steps of the world's image-encoder stand-in (world datasets only).
        sample_steps, guidance_scale: generation of query images from prompts.
        fisher_draws_per_item: (timestep, noise) draws per item of the Fisher fit.
    """

    teacher: dict[str, Any] = field(default_factory=dict)
    student: dict[str, Any] = field(default_factory=dict)
    pretrain_steps: int = 300
    sample_steps: int = 25
    guidance_scale: float = 3.0
    fisher_draws_per_item: int = 1

    def with_queries(self, n_train: int | None, n_test: int | None) -> "BuildSettings":
        """A copy with the query counts overridden (None keeps the preset's)."""
        teacher = dict(self.teacher)
        if n_train is not None:
            teacher["n_train_queries"] = int(n_train)
        if n_test is not None:
            teacher["n_test_queries"] = int(n_test)
        return dataclasses.replace(self, teacher=teacher)


# The names are those of `world make --preset` and `t2i train --preset`: one name, one size, so a
# chain of stages with the same --preset works.
BUILD_PRESETS: dict[str, BuildSettings] = {
    # Seconds on 2 cores for a tiny model: a smoke test of every stage, not a measurement.
    "tiny": BuildSettings(
        teacher={"n_train_queries": 8, "n_test_queries": 2, "candidates_k": 16, "subsample_m": 8,
                 "n_timesteps": 2, "query_draws": 4, "batch_size": 64},
        student={"steps": 30, "batch_size": 256, "hidden": 64, "dim": 32, "eval_every": 10},
        pretrain_steps=20, sample_steps=4),
    # The stages' own defaults (sized for the demo's budget on 2 cores), but the head trains 1000
    # steps, not the default 2000: the demo's 4 test queries cannot tell the two apart, and 2000
    # steps of the student and its regression ablation took 115 s longer (229 vs 114 s;
    # docs/student.md: mAP@21 0.428 vs 0.471 on the demo's eval preset).
    "demo": BuildSettings(student={"steps": 1000}),
    # Paper-like sizes (docs/teacher.md): hours on a CPU, meant for a GPU machine.
    "full": BuildSettings(teacher={"full": True}, pretrain_steps=500),
}
# Former names, still accepted by `fastattr build --preset` so that existing scripts keep working.
BUILD_PRESET_ALIASES = {"quick": "tiny", "default": "demo"}

_STAMP = "build.json"


class Stages:
    """Runs named stages unless their output is complete, logging and timing each one."""

    def __init__(self, log: Callable[[str], None] = print) -> None:
        self.log = log
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, done: bool, run: Callable[[], Any]) -> None:
        if done:
            self.log(f"[{name}] cached")
            return
        self.log(f"[{name}] running ...")
        t0 = time.perf_counter()
        run()
        self.timings[name] = round(time.perf_counter() - t0, 1)
        self.log(f"[{name}] done in {self.timings[name]:.1f} s")


def map_table(results: dict[str, Any]) -> list[list[str]]:
    """The student-vs-baselines mAP table of an evaluation's ``results.json`` as rows of cells."""
    # Small sets round several fractions to the same cut-off: show each cut-off once.
    columns = [j for j, c in enumerate(results["L"]) if c not in results["L"][:j]]
    rows = [["method"] + [f"mAP@{results['L'][j]}" for j in columns]]
    preferred = ["student", "regression", "concat", "image", "text", "pixels", "random"]
    names = sorted(results["methods"], key=lambda n: (preferred.index(n) if n in preferred else len(preferred), n))
    for name in names:
        cells = results["methods"][name]["map"]
        rows.append([name] + [f"{cells[j]['mean']:.3f} ± {cells[j]['se']:.3f}" for j in columns])
    return rows


def print_table(rows: list[list[str]], log: Callable[[str], None] = print) -> None:
    """Log rows of cells as left-aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        log("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def default_work_for(out: str | os.PathLike[str]) -> Path:
    """Where a build keeps its stages unless told otherwise: a sibling of the bundle folder."""
    target = Path(out)
    return target.with_name(f"{target.name}.build")


def _curation_config(settings: BuildSettings) -> Any:
    from .teacher.curate import CurationConfig

    overrides = {k: v for k, v in settings.teacher.items() if k != "full"}
    return CurationConfig.full(**overrides) if settings.teacher.get("full") else CurationConfig(**overrides)


def _check_work(work: Path, record: dict[str, Any], overwrite: bool) -> None:
    stamp = work / _STAMP
    if stamp.is_file():
        previous = json.loads(stamp.read_text(encoding="utf-8"))
        if previous.get("inputs") != record["inputs"] and not overwrite:
            raise InputError(
                f"{work} holds a build of other inputs or settings ({previous.get('inputs')}); "
                "pass --work to use another folder, or --overwrite to rebuild from scratch")
        if previous.get("inputs") != record["inputs"]:
            import shutil

            for name in ("teacher", "student", "eval", "export", "fisher.safetensors"):
                target = work / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
    work.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"format": "fastattr-build", "version": 1, **record})


def _choose_image_encoder(image_encoder: str | None, ds: Any) -> str:
    from .student.pipeline import WORLD_ENCODER

    if image_encoder:
        return image_encoder
    if any(ds.attributes):
        return WORLD_ENCODER
    raise InputError(
        "this dataset has no per-item attributes, so the embedded world's image-encoder stand-in cannot be "
        "pretrained on it: pass --image-encoder with a transformers vision model (a folder saved with "
        "save_pretrained or a hub id), e.g. --image-encoder facebook/dinov2-small")


def build(
    model: Any,
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    queries: Any = None,
    settings: BuildSettings | None = None,
    work: str | os.PathLike[str] | None = None,
    image_encoder: str | None = None,
    text_encoder: str | None = None,
    caption_column: str | None = None,
    workers: int = 1,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build a bundle from a diffusers pipeline folder, a dataset and queries; returns a summary.

    Args:
        model: a diffusers pipeline folder (or a loaded ``DiffusionModel`` with a ``path``).
        dataset: a dataset folder in any layout ``fastattr.data.load_dataset`` reads.
        out: the bundle folder to write.
        queries: a ``fastattr.teacher.queries.QuerySpec`` (prompts file or logged generations;
            default: the embedded world's held-out captions).
        settings: stage sizes (``BUILD_PRESETS[...]``; default "demo").
        work: where the stages are cached (default: ``OUT.build`` beside the bundle).

    Example:
        >>> from fastattr.teacher.queries import QuerySpec
        >>> build("models/my-sd", "data/my-imagefolder", "bundles/mine",
        ...       queries=QuerySpec(prompts="prompts.txt"), image_encoder="models/dinov2-small")  # doctest: +SKIP
    """
    from .teacher.pipeline import curate_folders, fit_fisher_on_folders, open_inputs
    from .teacher.queries import QuerySpec

    settings = settings or BUILD_PRESETS["demo"]
    spec = queries or QuerySpec()
    # Refused now, not after the teacher; --overwrite (the refusal names it) lets it through.
    check_replaceable(Path(out), "manifest.json", what="bundle", overwrite=overwrite)
    started = time.perf_counter()
    ds, m = open_inputs(dataset, model, caption_column=caption_column, progress=progress)
    if m.path is None:
        raise InputError("build needs a model loaded from a folder (fastattr.models.load_diffusion_model)")
    config = _curation_config(settings)
    config.check(len(ds))
    spec.check(ds)   # unreadable or missing queries: say so before any work
    chosen_encoder = _choose_image_encoder(image_encoder, ds)
    work_dir = Path(work) if work is not None else default_work_for(out)
    record = {"inputs": {"model": str(Path(m.path).resolve()), "model_digest": m.digest(),
                         "dataset": str(getattr(ds, "path", dataset)), "queries": dataclasses.asdict(spec),
                         "settings": dataclasses.asdict(settings), "image_encoder": chosen_encoder,
                         "text_encoder": text_encoder}}
    record["inputs"]["queries"] = {k: (str(v) if v is not None else None) for k, v in record["inputs"]["queries"].items()}
    _check_work(work_dir, record, overwrite)
    paths = {name: work_dir / name for name in ("teacher", "student", "eval", "export")}
    fisher_path = work_dir / "fisher.safetensors"
    stage = Stages(log)

    stage("fit-fisher", fisher_path.is_file(), lambda: fit_fisher_on_folders(
        ds, m, fisher_path, draws_per_item=settings.fisher_draws_per_item, seed=config.seed, progress=progress,
        cache=paths["teacher"] / "work"))
    stage("teacher", (paths["teacher"] / "teacher_set.json").is_file(), lambda: curate_folders(
        ds, m, paths["teacher"], config=config, fisher=fisher_path, queries=spec, sample_steps=settings.sample_steps,
        guidance_scale=settings.guidance_scale, workers=workers, progress=progress, log=log))

    from .student.evaluate import evaluate_student
    from .student.pipeline import default_config, train_student

    cache = work_dir / ".student-cache"
    stage("student", (paths["student"] / "student.json").is_file(), lambda: train_student(
        ds, paths["teacher"], paths["student"], image_encoder=chosen_encoder, text_encoder=text_encoder,
        config=default_config(**settings.student), pretrain_steps=settings.pretrain_steps, cache_dir=cache,
        progress=progress))
    stage("eval", (paths["eval"] / "results.json").is_file(), lambda: evaluate_student(
        paths["student"], ds, paths["teacher"], paths["eval"], cache_dir=cache, progress=progress))

    from .export import export_student

    stage("export", (paths["export"] / "export.json").is_file(), lambda: export_student(
        paths["student"], paths["export"], dataset=ds, fp16=True))

    from .export.evaluate import variant_maps
    from .bundle_build import build_bundle

    results = json.loads((paths["eval"] / "results.json").read_text(encoding="utf-8"))
    teacher_meta = json.loads((paths["teacher"] / "teacher_set.json").read_text(encoding="utf-8"))

    def make_bundle() -> None:
        variants = variant_maps(paths["export"], ds, paths["teacher"])
        keys = ("method", "candidates_k", "subsample_m", "timesteps", "n_queries", "config", "model",
                "model_space", "query_source")
        build_bundle(out, embedder=paths["export"], dataset=ds,
                     evaluation={"student_eval": results, "variants": variants},
                     provenance={"teacher": {k: teacher_meta.get(k) for k in keys}, **(provenance or {})},
                     overwrite=overwrite, progress=progress)

    # A bundle older than a stage that just ran is rebuilt.
    stage("bundle", (Path(out) / "manifest.json").is_file() and not stage.timings, make_bundle)
    return {"bundle": str(out), "work": str(work_dir), "results": results, "teacher": teacher_meta,
            "timings": stage.timings, "total_s": round(time.perf_counter() - started, 1)}
