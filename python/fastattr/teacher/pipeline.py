"""The teacher on folders: a diffusers pipeline folder + a dataset + queries → Fisher and teacher set."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .._atomic import atomic_open, write_json
from ..errors import CheckpointError
from .curate import CurationConfig, ItemInputs, QueryInputs, curate
from .ekfac import KVFisher, load_fisher
from .fisher import fit_fisher
from ..data.cache import cached_rows, content_digest
from .inputs import dataset_inputs
from .queries import QuerySpec, assign_splits, read_prompts, uses_world_captions

if TYPE_CHECKING:
    from ..models import DiffusionModel

__all__ = ["open_inputs", "fit_fisher_on_folders", "curate_folders", "build_queries"]


def open_inputs(dataset: Any, model: Any, *, caption_column: str | None = None,
                progress: bool = True) -> tuple[Any, "DiffusionModel"]:
    """The model (a pipeline folder or a loaded DiffusionModel) and the dataset at its resolution.

    Example:
        >>> ds, model = open_inputs("data/my-imagefolder", "models/my-sd-pipeline")  # doctest: +SKIP
    """
    from ..data import load_dataset
    from ..models import DiffusionModel, load_diffusion_model

    m = model if isinstance(model, DiffusionModel) else load_diffusion_model(model)
    ds = dataset if hasattr(dataset, "images") else load_dataset(
        dataset, image_size=m.resolution, caption_column=caption_column, progress=progress)
    return ds, m


def _cache_dir(out: str | os.PathLike[str], cache: str | os.PathLike[str] | None) -> Path:
    return Path(cache) if cache else Path(out).parent / ".teacher-cache"


def fit_fisher_on_folders(
    dataset: Any, model: Any, out: str | os.PathLike[str], *,
    draws_per_item: int = 1, batch_size: int = 64, seed: int = 0, progress: bool = True,
    cache: str | os.PathLike[str] | None = None, caption_column: str | None = None,
) -> KVFisher:
    """Fit the K/V Fisher of a model over a dataset and save it to ``out`` (safetensors).

    Example:
        >>> fit_fisher_on_folders("runs/world", "runs/t2i", "runs/fisher.safetensors")  # doctest: +SKIP
    """
    ds, m = open_inputs(dataset, model, caption_column=caption_column, progress=progress)
    x, text, _ = dataset_inputs(m, ds, _cache_dir(out, cache), progress=progress)
    fisher = fit_fisher(m, x, text, draws_per_item=draws_per_item, batch_size=batch_size, seed=seed,
                        progress=progress)
    fisher.save(out)
    return fisher


def build_queries(model: "DiffusionModel", ds: Any, spec: QuerySpec, config: CurationConfig, work: Path, *,
                  out: Path, sample_steps: int, guidance_scale: float, progress: bool) -> QueryInputs:
    """The run's queries with their images, model-space inputs, text states and splits (cached in ``work``).

    Prompts are generated with the model itself (seeded; PNGs saved in ``out/query_images``);
    logged generations are read at the model's resolution; with neither, a world dataset uses its
    held-out captions.
    """
    n_train, n_test = config.n_train_queries, config.n_test_queries
    sources: list[str] | None = None
    if spec.query_images is not None:
        from ..data import load_dataset

        logged = load_dataset(spec.query_images, image_size=model.resolution,
                              caption_column=spec.caption_column, progress=progress)
        picks = assign_splits([None] * len(logged), n_train=n_train, n_test=n_test,
                              source=str(spec.query_images))
        captions = [logged.captions[i] for i, _ in picks]
        images = np.stack([np.asarray(logged.images[i]) for i, _ in picks])
        uris = logged.uris or [None] * len(logged)
        sources = [str(uris[i]) if uris[i] is not None else f"{spec.query_images}#{i}" for i, _ in picks]
    else:
        if spec.prompts is not None:
            rows = read_prompts(spec.prompts)
            picks = assign_splits([s for _, s in rows], n_train=n_train, n_test=n_test, source=str(spec.prompts))
            captions = [rows[i][0] for i, _ in picks]
        elif uses_world_captions(spec, ds):
            from ..world import held_out_captions

            captions = held_out_captions(n_train + n_test, config.seed)
            # The world's held-out captions: train queries first, then test (as before).
            picks = [(i, "train" if i < n_train else "test") for i in range(n_train + n_test)]
        key = content_digest(model.digest(), json.dumps(captions), config.seed, sample_steps, guidance_scale)
        shape = (model.resolution, model.resolution, 3)
        generated = cached_rows(work / "query_images_generated.npy", key, shape,
                                lambda lo, hi: model.generate(captions[lo:hi], seed=config.seed + lo,
                                                              steps=sample_steps, guidance_scale=guidance_scale),
                                n=len(captions), batch=16, desc="generating query images", progress=progress,
                                dtype=np.uint8)
        images = np.asarray(generated)
        sources = ["generated"] * len(captions)
        _save_pngs(out / "query_images", images)
    splits = [split for _, split in picks]
    x = model.to_model_space(images).float().numpy()
    states = model.encode_prompts(captions).float().numpy()
    return QueryInputs(captions=captions, images=images, x=x, text_states=states, splits=splits,
                       sources=sources)


def _save_pngs(folder: Path, images: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for q, image in enumerate(images):
        with atomic_open(folder / f"q{q:06d}.png", "wb") as handle:
            Image.fromarray(image).save(handle, format="PNG")


def curate_folders(
    dataset: Any, model: Any, out: str | os.PathLike[str], *,
    config: CurationConfig | None = None, fisher: str | os.PathLike[str] | None = None,
    queries: QuerySpec | None = None, caption_column: str | None = None,
    fisher_draws_per_item: int = 1, sample_steps: int = 25, guidance_scale: float = 3.0,
    workers: int = 1, progress: bool = True, overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Algorithm 1 on folders: queries → (generated) images → teacher ranks → teacher set in ``out``.

    ``model`` is a diffusers pipeline folder (or a loaded DiffusionModel); ``dataset`` any layout
    :func:`fastattr.data.load_dataset` reads. The model-space inputs, text states, query images
    and (when ``fisher`` is None) the fitted Fisher are cached under ``out/work``, so a rerun
    after a crash redoes none of them.

    Example:
        >>> curate_folders("runs/world", "runs/t2i", "runs/teacher", workers=2)  # doctest: +SKIP
        >>> curate_folders("data/imgs", "models/sd", "runs/teacher",
        ...                queries=QuerySpec(prompts="prompts.txt"))             # doctest: +SKIP
    """
    config = config or CurationConfig()
    spec = queries or QuerySpec()
    t0 = time.perf_counter()
    ds, m = open_inputs(dataset, model, caption_column=caption_column, progress=progress)
    config.check(len(ds))
    root = Path(out)
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    x, text, item_key = dataset_inputs(m, ds, work, progress=progress)
    log(f"item inputs ready ({time.perf_counter() - t0:.1f} s)")
    query_inputs = build_queries(m, ds, spec, config, work, out=root, sample_steps=sample_steps,
                                 guidance_scale=guidance_scale, progress=progress)
    log(f"{len(query_inputs.captions)} query images ready ({time.perf_counter() - t0:.1f} s)")

    if fisher is not None:
        kv_fisher = load_fisher(fisher)
    else:
        fisher_file = work / "fisher_fitted.safetensors"
        f_key = content_digest(item_key, fisher_draws_per_item, config.seed)
        key_file = work / "fisher_fitted.json"
        if fisher_file.is_file() and key_file.is_file() and json.loads(key_file.read_text()).get("key") == f_key:
            kv_fisher = load_fisher(fisher_file)
        else:
            kv_fisher = fit_fisher(m, x, text, draws_per_item=fisher_draws_per_item, seed=config.seed,
                                   progress=progress)
            kv_fisher.save(fisher_file)
            write_json(key_file, {"key": f_key})
        log(f"Fisher ready ({time.perf_counter() - t0:.1f} s)")
    if set(kv_fisher.layers) != set(m.kv_layers()):
        raise CheckpointError("the Fisher was fitted on another model (its layers differ); refit it")
    items = ItemInputs(x=x, text_states=text, ids=np.asarray(ds.item_ids, dtype=np.int64), digest=item_key)
    path = curate(root, m, items, query_inputs, method=config.method(kv_fisher), config=config,
                  workers=workers, progress=progress, overwrite=overwrite,
                  extra_meta={"dataset": str(getattr(ds, "path", dataset)), "model_path": str(m.path),
                              "sample_steps": sample_steps, "guidance_scale": guidance_scale,
                              "query_source": ("query_images" if spec.query_images is not None else
                                               "prompts" if spec.prompts is not None else "world_held_out")})
    log(f"teacher set written to {path} ({time.perf_counter() - t0:.1f} s)")
    return path
