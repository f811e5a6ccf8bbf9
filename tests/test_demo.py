"""Tests of the cheap parts of fastattr.demo (the full run is exercised by `fastattr demo --preset tiny`)."""

from __future__ import annotations

import json

import pytest

from fastattr.build import map_table
from fastattr.demo import _check_work, run_demo
from fastattr.errors import InputError


def test_work_folder_guards(tmp_path):
    work = tmp_path / "work"
    _check_work(work, "tiny", fresh=False)
    assert json.loads((work / "demo.json").read_text())["preset"] == "tiny"
    with pytest.raises(InputError, match="holds a 'tiny' demo, not 'demo'"):
        _check_work(work, "demo", fresh=False)
    (work / "stage").mkdir()
    _check_work(work, "demo", fresh=True)  # a demo folder may be wiped
    assert not (work / "stage").exists()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    with pytest.raises(InputError, match="not a demo work folder"):
        _check_work(other, "demo", fresh=True)
    assert (other / "thesis.tex").exists()
    with pytest.raises(InputError, match="unknown demo preset"):
        run_demo(tmp_path / "w2", preset="huge")
    with pytest.raises(InputError, match="threads must be at least 1"):
        run_demo(tmp_path / "w3", preset="tiny", threads=0)
    assert not (tmp_path / "w3").exists()


def test_map_table_puts_the_student_first():
    results = {"L": [3, 9], "methods": {
        "random": {"map": [{"mean": 0.1, "se": 0.01, "L": 3}, {"mean": 0.2, "se": 0.02, "L": 9}]},
        "student": {"map": [{"mean": 0.7, "se": 0.05, "L": 3}, {"mean": 0.6, "se": 0.04, "L": 9}]}}}
    rows = map_table(results)
    assert rows[0] == ["method", "mAP@3", "mAP@9"]
    assert rows[1] == ["student", "0.700 ± 0.050", "0.600 ± 0.040"] and rows[2][0] == "random"
    # A small set rounds two fractions to one cut-off: the column appears once.
    results["L"] = [3, 3]
    assert map_table(results)[0] == ["method", "mAP@3"] and map_table(results)[1] == ["student", "0.700 ± 0.050"]


def test_each_preset_has_its_own_default_work_folder():
    from fastattr.demo import PRESETS, default_work

    folders = {default_work(p) for p in PRESETS}
    assert default_work("demo") == ".fastattr/demo" and len(folders) == len(PRESETS)
    # The eval preset measures the student on the demo's own world and T2I model.
    assert PRESETS["eval"]["stages"] == PRESETS["demo"]["stages"] == "demo"
    assert PRESETS["eval"]["build"].teacher["n_test_queries"] >= 16
