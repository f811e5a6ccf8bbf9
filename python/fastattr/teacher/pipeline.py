"""The teacher on folders: fit the Fisher and curate a teacher set from a dataset and a T2I model folder."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .._atomic import atomic_open, write_json
from ..errors import CheckpointError
from .curate import CurationConfig, curate
from .ekfac import KVFisher, load_fisher
from .fisher import fit_fisher

__all__ = ["fit_fisher_on_folders", "curate_folders"]


def _digest(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()


def _model_digest(model: Any) -> str:
    return _digest(*(v.detach().float().numpy().tobytes() for v in model.unet.state_dict().values()))


def _cached_npz(path: Path, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load ``path`` if it was made for ``key``; else compute and save it atomically (resumability)."""
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file() and json.loads(meta.read_text()).get("key") == key:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    arrays = compute()
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)
    write_json(meta, {"key": key})
    return arrays


def _item_text_states(model: Any, captions: list[str], cache: Path, progress: bool) -> np.ndarray:
    key = _digest(model.config.text_encoder, model.config.text_max_length, json.dumps(captions))
    # Encoding a few thousand captions costs tens of seconds: do it once per dataset and encoder.
    return _cached_npz(cache / "item_text_states.npz", key,
                       lambda: {"states": model.encode_text(captions, progress=progress).numpy()})["states"]


def fit_fisher_on_folders(
    dataset: str | os.PathLike[str], model: str | os.PathLike[str], out: str | os.PathLike[str], *,
    draws_per_item: int = 1, batch_size: int = 64, seed: int = 0, progress: bool = True,
    cache: str | os.PathLike[str] | None = None,
) -> KVFisher:
    """Fit the K/V Fisher of the model folder ``model`` over the dataset folder and save it to ``out``.

    Example:
        >>> fit_fisher_on_folders("runs/world", "runs/t2i", "runs/fisher.safetensors")  # doctest: +SKIP
    """
    from ..t2i import load_model, loss, to_model_input
    from ..world import load_dataset

    ds, m = load_dataset(dataset), load_model(model)
    cache_dir = Path(cache) if cache else Path(out).parent / ".teacher-cache"
    text = torch.from_numpy(_item_text_states(m, list(ds.captions), cache_dir, progress))
    fisher = fit_fisher(m.unet, to_model_input(np.asarray(ds.images)), text, m.alphas_cumprod,
                        draws_per_item=draws_per_item, batch_size=batch_size, seed=seed,
                        loss_fn=loss, progress=progress)
    fisher.save(out)
    return fisher


def curate_folders(
    dataset: str | os.PathLike[str], model: str | os.PathLike[str], out: str | os.PathLike[str], *,
    config: CurationConfig | None = None, fisher: str | os.PathLike[str] | None = None,
    fisher_draws_per_item: int = 1, sample_steps: int = 25, guidance_scale: float = 3.0,
    workers: int = 1, progress: bool = True, overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Algorithm 1 on folders: held-out captions → generated queries → teacher ranks → ``out``.

    The item text states, the generated query images and (when ``fisher`` is None) the fitted
    Fisher are cached under ``out/work`` so that a rerun after a crash redoes none of them.

    Example:
        >>> curate_folders("runs/world", "runs/t2i", "runs/teacher", workers=2)  # doctest: +SKIP
    """
    from ..t2i import load_model, to_model_input
    from ..world import held_out_captions, load_dataset

    config = config or CurationConfig()
    t0 = time.perf_counter()
    ds, m = load_dataset(dataset), load_model(model)
    config.check(len(ds))
    work = Path(out) / "work"
    work.mkdir(parents=True, exist_ok=True)
    model_key = _model_digest(m)
    text = _item_text_states(m, list(ds.captions), work, progress)
    log(f"item text states ready ({time.perf_counter() - t0:.1f} s)")

    n_q = config.n_train_queries + config.n_test_queries
    captions = held_out_captions(n_q, config.seed)
    splits = ["train"] * config.n_train_queries + ["test"] * config.n_test_queries
    q_key = _digest(model_key, json.dumps(captions), config.seed, sample_steps, guidance_scale)
    queries = _cached_npz(work / "queries_generated.npz", q_key, lambda: {
        "images": m.sample(captions, seed=config.seed, steps=sample_steps, guidance_scale=guidance_scale,
                           progress=progress),
        "states": m.encode_text(captions).numpy(),
    })
    log(f"{n_q} query images ready ({time.perf_counter() - t0:.1f} s)")

    if fisher is not None:
        kv_fisher = load_fisher(fisher)
    else:
        fisher_file = work / "fisher_fitted.safetensors"
        f_key = _digest(model_key, json.dumps(list(ds.captions)), np.asarray(ds.images).tobytes(),
                        fisher_draws_per_item, config.seed)
        key_file = work / "fisher_fitted.json"
        if fisher_file.is_file() and key_file.is_file() and json.loads(key_file.read_text()).get("key") == f_key:
            kv_fisher = load_fisher(fisher_file)
        else:
            kv_fisher = fit_fisher(m.unet, to_model_input(np.asarray(ds.images)), torch.from_numpy(text),
                                   m.alphas_cumprod, draws_per_item=fisher_draws_per_item,
                                   seed=config.seed, loss_fn=_t2i_loss(), progress=progress)
            kv_fisher.save(fisher_file)
            write_json(key_file, {"key": f_key})
        log(f"Fisher ready ({time.perf_counter() - t0:.1f} s)")
    if set(kv_fisher.layers) != set(_kv_names(m.unet)):
        raise CheckpointError("the Fisher was fitted on another model (its layers differ); refit it")
    path = curate(out, unet=m.unet, alphas_cumprod=m.alphas_cumprod, item_images=np.asarray(ds.images),
                  item_text_states=text, item_ids=np.asarray(ds.item_ids, dtype=np.int64),
                  fisher=kv_fisher, query_captions=captions, query_images=queries["images"],
                  query_text_states=queries["states"], splits=splits, config=config,
                  loss_fn="fastattr.t2i:loss", workers=workers, progress=progress, overwrite=overwrite,
                  extra_meta={"dataset": str(dataset), "model": str(model),
                              "sample_steps": sample_steps, "guidance_scale": guidance_scale})
    log(f"teacher set written to {path} ({time.perf_counter() - t0:.1f} s)")
    return path


def _t2i_loss() -> Any:
    from ..t2i import loss

    return loss


def _kv_names(unet: Any) -> list[str]:
    from .layers import find_kv_layers

    return list(find_kv_layers(unet))
