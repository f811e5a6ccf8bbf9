"""Tests of fastattr.teacher.worker: loss-function names and result paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastattr.errors import CheckpointError
from fastattr.teacher.worker import resolve_loss_fn, result_path


def test_resolve_loss_fn() -> None:
    from fastattr.teacher.scoring import ddpm_loss

    assert resolve_loss_fn("fastattr.teacher.scoring:ddpm_loss") is ddpm_loss
    for bad in ("os:system", "fastattr.teacher.scoring", "builtins:eval"):
        with pytest.raises(CheckpointError, match="must be 'fastattr"):
            resolve_loss_fn(bad)


def test_result_path() -> None:
    assert result_path(Path("w"), 12) == Path("w/results/q000012.npz")
