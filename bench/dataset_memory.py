"""Peak memory of loading a large dataset: N synthetic JPEGs in webdataset shards, decoded at 256×256.

Usage:
    python bench/dataset_memory.py --n 100000 --size 256 --work /tmp/fastattr-dsmem [--model PIPE]

Writes N random-size JPEGs (between 200 and 400 pixels a side, every mode the policy converts
is not needed here: RGB) into tar shards of 1,000, then, in a fresh child process, loads them with
``fastattr.data.load_dataset(image_size=SIZE)`` (streamed decode into the memory-mapped cache) and,
with ``--model``, computes the model-space inputs (``teacher.inputs.dataset_inputs``) of a diffusers
pipeline folder. The child reports its peak resident memory (``ru_maxrss``) and the seconds of
each step; the images themselves are N·SIZE²·3 bytes on disk, never in memory at once.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import time
from pathlib import Path


def write_shards(root: Path, n: int, per_shard: int = 1000) -> None:
    import numpy as np
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    done = root / "complete.json"
    if done.is_file() and json.loads(done.read_text()).get("n") == n:
        return
    rng = np.random.default_rng(0)
    for shard in range(0, n, per_shard):
        with tarfile.open(root / f"{shard // per_shard:06d}.tar", "w") as tar:
            for i in range(shard, min(shard + per_shard, n)):
                w, h = (int(v) for v in rng.integers(200, 400, 2))
                base = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
                image = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
                buf = io.BytesIO()
                image.save(buf, format="JPEG", quality=85)
                for name, data in ((f"{i:08d}.jpg", buf.getvalue()), (f"{i:08d}.txt", f"image {i}".encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        print(f"wrote {min(shard + per_shard, n)}/{n}", file=sys.stderr, flush=True)
    done.write_text(json.dumps({"n": n}))


def child(args: argparse.Namespace) -> None:
    from fastattr.data import load_dataset

    out: dict = {}
    t0 = time.perf_counter()
    ds = load_dataset(args.work + "/shards", image_size=args.size, cache_dir=args.work + "/cache", progress=True)
    out["load_s"] = round(time.perf_counter() - t0, 1)
    out["images_shape"] = list(ds.images.shape)
    out["images_gib_on_disk"] = round(ds.images.nbytes / 2**30, 2)
    out["peak_rss_after_load_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.model:
        from fastattr.models import load_diffusion_model
        from fastattr.teacher.inputs import dataset_inputs

        model = load_diffusion_model(args.model)
        t0 = time.perf_counter()
        x, states, _ = dataset_inputs(model, ds, args.work + "/inputs", progress=True)
        out["model_inputs_s"] = round(time.perf_counter() - t0, 1)
        out["model_inputs_shape"] = list(x.shape)
        out["peak_rss_after_inputs_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--work", default="/tmp/fastattr-dsmem")
    parser.add_argument("--model", default=None, help="diffusers pipeline folder: also cache its model-space inputs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    t0 = time.perf_counter()
    write_shards(Path(args.work) / "shards", args.n)
    print(f"shards ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    cmd = [sys.executable, __file__, "--child", "--n", str(args.n), "--size", str(args.size), "--work", args.work]
    if args.model:
        cmd += ["--model", args.model]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures.update({"n": args.n, "size": args.size, "cpus": os.cpu_count(), "load_avg": os.getloadavg()})
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
