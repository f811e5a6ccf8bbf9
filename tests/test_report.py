"""Tests of fastattr.report and the `fastattr query` / `fastattr bundle build` (alias `index build`) commands."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

import _export_kit as kit
from fastattr.cli import main
from fastattr.report import bundle_thumbnails, render_html, write_report
from fastattr.results import Attribution


def test_render_is_self_contained_and_escaped(tmp_path):
    hits = [Attribution(1, 3, 0.9, "a <b>red</b> & blue square", "/data/x.png"),
            Attribution(2, 8, 0.4, "plain", None)]
    thumbs = {3: np.zeros((6, 6, 3), np.uint8)}
    page = render_html(np.full((8, 8, 3), 200, np.uint8), 'prompt "quoted" <x>', hits, thumbnails=thumbs,
                       meta={"device": "cpu"})
    assert "&lt;b&gt;red&lt;/b&gt; &amp; blue" in page and "<b>red" not in page
    assert "&lt;x&gt;" in page and "device: cpu" in page
    assert page.count("data:image/png;base64,") == 2  # query + one thumbnail
    assert "no thumbnail" in page and "#1" in page and "0.9000" in page
    assert not re.search(r'src="(?!data:)', page)  # nothing fetched from outside
    path = write_report(tmp_path / "r.html", np.zeros((4, 4, 3), np.uint8), "p", hits)
    assert path.read_text().startswith("<!DOCTYPE html>")


def test_thumbnails_from_bundle_and_uri(tmp_path):
    from fastattr.bundle import open_bundle

    bundle = open_bundle(kit.bundle())
    hits = [Attribution(1, int(kit.dataset().item_ids[5]), 1.0, "c", None)]
    thumbs = bundle_thumbnails(bundle, hits)
    np.testing.assert_array_equal(thumbs[hits[0].item_id], kit.dataset().images[5])
    picture = tmp_path / "p.png"
    Image.fromarray(np.full((5, 5, 3), 9, np.uint8)).save(picture)
    from_uri = bundle_thumbnails(None, [Attribution(1, 1, 1.0, "c", str(picture))])
    assert from_uri[1].shape == (5, 5, 3)


def test_query_command_json_and_html(tmp_path, capsys):
    data = kit.dataset()
    image = tmp_path / "generated.png"
    Image.fromarray(np.asarray(data.images[9])).save(image)
    report = tmp_path / "report.html"
    code = main(["query", str(kit.bundle()), str(image), data.captions[9], "-k", "4", "--json",
                 "--html", str(report), "--device", "cpu"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in out["results"]] == [1, 2, 3, 4]
    assert out["results"][0]["item_id"] == int(data.item_ids[9]) and out["device"] == "cpu"
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 5 and data.captions[9] in page
    assert main(["query", str(kit.bundle()), str(image), data.captions[9], "-k", "2"]) == 0
    assert "top 2 of" in capsys.readouterr().out


def test_query_command_errors(tmp_path, capsys):
    image = tmp_path / "bad.png"
    image.write_bytes(b"nope")
    assert main(["query", str(kit.bundle()), str(image), "a red square"]) == 1
    assert "InputError" in capsys.readouterr().err
    assert main(["query", str(tmp_path / "nobundle"), str(image), "a red square"]) == 1
    assert "BundleError" in capsys.readouterr().err
    good = tmp_path / "good.png"
    Image.fromarray(np.asarray(kit.dataset().images[0])).save(good)
    assert main(["query", str(kit.bundle()), str(good), "a", "--exclude", "1,x"]) == 1
    assert "--exclude" in capsys.readouterr().err


def test_bundle_build_command(tmp_path, capsys):
    kit.bundle()
    world = kit.root() / "world"
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"mAP@10": 0.5}))
    code = main(["bundle", "build", "--embedder", str(kit.root() / "export"), "--dataset", str(world),
                 "--out", str(tmp_path / "b"), "--thumbnail-size", "0", "--eval", str(evaluation)])
    assert code == 0 and "48 items" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["evaluation"] == {"mAP@10": 0.5} and "thumbnails" not in manifest["roles"]
    assert manifest["provenance"]["dataset"]["path"].endswith("world")
    # `index build`, the former name, is the same command.
    assert main(["index", "build", "--embedder", str(tmp_path), "--dataset", str(world),
                 "--out", str(tmp_path / "c")]) == 1
    assert "no export.json" in capsys.readouterr().err
    assert main(["index", "build", "--embedder", str(kit.root() / "export"), "--dataset", str(world),
                 "--out", str(tmp_path / "d"), "--eval", str(tmp_path / "missing.json")]) == 1
    assert "cannot read evaluation" in capsys.readouterr().err
