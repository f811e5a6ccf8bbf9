"""Tests of fastattr.teacher.worker: result paths and the model check of a worker process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastattr.errors import CheckpointError
from fastattr.teacher.worker import load_model_for, result_path


def test_result_path() -> None:
    assert result_path(Path("w"), 12) == Path("w/results/q000012.npz")


def test_worker_refuses_a_model_changed_since_the_run_started(pipeline_folders, tmp_path: Path) -> None:
    from fastattr.models import load_diffusion_model

    folder = pipeline_folders["pixel"]
    digest = load_diffusion_model(folder).digest()
    (tmp_path / "run.json").write_text(json.dumps({"model": {"path": str(folder), "digest": digest}}))
    assert load_model_for(tmp_path).digest() == digest
    (tmp_path / "run.json").write_text(json.dumps({"model": {"path": str(folder), "digest": "0" * 64}}))
    with pytest.raises(CheckpointError, match="changed since this curation run started"):
        load_model_for(tmp_path)
