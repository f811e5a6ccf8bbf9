"""Tests of fastattr._quiet: third-party chatter off in a CLI run, fastattr's own warnings kept."""

from __future__ import annotations

import contextlib
import os
import warnings

import pytest

from fastattr import cli
from fastattr._quiet import QUIET_ENVIRONMENT, quiet_third_party


def _warn_from(module: str, message: str) -> None:
    # A warning is attributed to the module whose code calls warnings.warn.
    exec("import warnings\nwarnings.warn(message, UserWarning)", {"__name__": module, "message": message})


def test_third_party_warnings_are_dropped_and_fastattr_s_kept():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_third_party():
            _warn_from("torch.onnx._internal.exporter", "library advice")
            _warn_from("fastattr_plugin", "a package that only starts like fastattr")
            _warn_from("fastattr.onnx_embedder", "CUDA unavailable; running on CPU")
            _warn_from("fastattr", "from the package itself")
        _warn_from("transformers", "after the block, filters are as before")
    assert [str(w.message) for w in caught] == [
        "CUDA unavailable; running on CPU", "from the package itself", "after the block, filters are as before"]


def test_fastattr_warnings_still_follow_the_callers_filters():
    # The suite turns fastattr's warnings into errors; the quiet block must not undo that.
    with warnings.catch_warnings():
        warnings.filterwarnings("error", module=r"fastattr(\..*)?$")
        with quiet_third_party(), pytest.raises(UserWarning, match="own"):
            _warn_from("fastattr.teacher.curate", "own")


def test_environment_defaults_are_set_then_restored(monkeypatch):
    for name in QUIET_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_LOGS", "+onnx")  # the user asked for torch.onnx's logs: theirs wins
    with quiet_third_party():
        assert os.environ["TRANSFORMERS_VERBOSITY"] == "error" and os.environ["TQDM_DISABLE"] == "1"
        assert os.environ["TORCH_LOGS"] == "+onnx"
    assert "TRANSFORMERS_VERBOSITY" not in os.environ and "TQDM_DISABLE" not in os.environ
    assert os.environ["TORCH_LOGS"] == "+onnx"


@pytest.mark.parametrize("verbose, quieted", [([], 1), (["--verbose"], 0), (["-v"], 0)])
def test_the_cli_quiets_third_parties_unless_verbose(tmp_path, monkeypatch, capsys, verbose, quieted):
    entered = []

    @contextlib.contextmanager
    def spy():
        entered.append(True)
        yield

    monkeypatch.setattr(cli, "quiet_third_party", spy)
    assert cli.main([*verbose, "world", "make", str(tmp_path / "w"), "--n-items", "2", "--image-size", "8"]) == 0
    assert len(entered) == quieted
