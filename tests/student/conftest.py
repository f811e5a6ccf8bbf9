"""Shared fixtures for the student tests: one tiny world, a synthetic teacher set, tiny encoders."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # The tests' tensors are tiny: a second thread only adds synchronization cost on a shared CPU.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory):
    from fastattr.world import make_world

    return make_world(tmp_path_factory.mktemp("world") / "world", n_items=160, seed=0, image_size=16)


@pytest.fixture(scope="session")
def teacher_dir(world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .synthetic import write_teacher_set

    return write_teacher_set(tmp_path_factory.mktemp("teacher") / "teacher", world)


@pytest.fixture(scope="session")
def text_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .synthetic import tiny_text_encoder_folder

    return tiny_text_encoder_folder(tmp_path_factory.mktemp("text") / "bert")


@pytest.fixture(scope="session")
def student_dir(world, teacher_dir, text_encoder_dir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student trained end to end on the tiny world (few steps: the tests check plumbing, not quality)."""
    from fastattr.student.pipeline import default_config, train_student

    out = tmp_path_factory.mktemp("student") / "student"
    train_student(world.path, teacher_dir, out, text_encoder=str(text_encoder_dir), pretrain_steps=10,
                  config=default_config(steps=30, eval_every=10, batch_size=256, hidden=64, dim=32),
                  progress=False)
    return out
