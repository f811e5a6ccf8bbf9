"""DiffusersModel.digest keys caches and resume fingerprints, so it must not change between processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import _pipelines

DIGEST = "from fastattr.models import load_diffusion_model; import sys; print(load_diffusion_model(sys.argv[1]).digest())"


def test_digest_is_the_same_in_every_process(tmp_path: Path) -> None:
    # diffusers lists "_use_default_values" from a set: its order follows the hash seed.
    pipe = _pipelines.latent_pipeline(tmp_path / "pipe")
    digests = set()
    for hash_seed in ("1", "2", "3"):
        run = subprocess.run([sys.executable, "-c", DIGEST, str(pipe)], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"})
        assert run.returncode == 0, run.stderr[-2000:]
        digests.add(run.stdout.strip().splitlines()[-1])
    assert len(digests) == 1, digests


def test_digest_follows_the_weights_and_the_schedule(tmp_path: Path) -> None:
    from fastattr.models import load_diffusion_model

    base = load_diffusion_model(_pipelines.latent_pipeline(tmp_path / "a"))
    other_weights = load_diffusion_model(_pipelines.latent_pipeline(tmp_path / "b", seed=1))
    v_prediction = load_diffusion_model(_pipelines.latent_pipeline(tmp_path / "c", prediction_type="v_prediction"))
    assert len({base.digest(), other_weights.digest(), v_prediction.digest()}) == 3
