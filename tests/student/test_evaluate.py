"""Evaluation: per-query AP from one sort equals the reference, the report has every method, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fastattr.errors import InputError
from fastattr.student.evaluate import METHODS, evaluate_student, plot_results
from fastattr.student.metrics import ap_at_cutoffs, average_precision


def test_ap_at_cutoffs_matches_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores, teacher = rng.standard_normal(50), rng.permutation(50)
        got = ap_at_cutoffs(scores, teacher, [1, 5, 17])
        assert got == pytest.approx([average_precision(scores, teacher[:c]) for c in (1, 5, 17)])


def test_report_has_every_method(student_dir, world, teacher_dir, tmp_path):
    results = evaluate_student(student_dir, world.path, teacher_dir, tmp_path / "eval", progress=False)
    assert set(results["methods"]) == set(METHODS)
    assert results["L"] == [1, 1, 5] and results["n_test_queries"] == 6
    for row in results["methods"].values():
        assert all(0.0 <= r["mean"] <= 1.0 and r["se"] >= 0.0 for r in row["map"])
    # The toy teacher's most influential item is the query's (noisy) source image: raw pixels find it.
    assert results["methods"]["pixels"]["map"][0]["mean"] > results["methods"]["random"]["map"][0]["mean"]
    on_disk = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert on_disk["methods"]["student"] == results["methods"]["student"]
    assert (tmp_path / "eval" / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_ablation(tmp_path):
    results = {"L": [1, 2], "fractions": [0.1, 0.2], "n_items": 10, "n_test_queries": 2,
               "methods": {"student": {"map": [{"mean": 0.5, "se": 0.1, "L": 1}, {"mean": 0.4, "se": 0.1, "L": 2}]}}}
    assert plot_results(results, tmp_path / "p.png").stat().st_size > 1000


def test_no_test_queries(student_dir, world, teacher_dir, tmp_path):
    folder = tmp_path / "ts"
    shutil.copytree(teacher_dir, folder)
    rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
    with np.load(folder / "pairs.npz") as z:
        arrays = {k: z[k] for k in z.files}
    keep = np.isin(arrays["query_id"], [r["query_id"] for r in rows if r["split"] == "train"])
    np.savez(folder / "pairs.npz", **{k: v[keep] for k, v in arrays.items()})
    for r in rows:
        r["split"] = "train"
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match="has no test queries"):
        evaluate_student(student_dir, world.path, folder, tmp_path / "eval", progress=False)
