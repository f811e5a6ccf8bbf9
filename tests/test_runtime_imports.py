"""The runtime SDK path (load a bundle, query) never imports torch: checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import _export_kit as kit

_SCRIPT = r"""
import json, sys
import fastattr
fastattr.Attributor, fastattr.Attribution
import fastattr.bundle, fastattr.preprocess, fastattr.report, fastattr.results, fastattr.query_cli, fastattr.bundle_build, fastattr.onnx_embedder
import fastattr.cli
fastattr.cli.build_parser()  # every stage's CLI registers without importing torch
import numpy as np
attributor = fastattr.Attributor.load({bundle!r}, device="cpu")
hits = attributor.query(np.zeros((16, 16, 3), np.uint8), "a red square", k=3)
heavy = sorted(m for m in ("torch", "transformers", "diffusers", "onnx", "onnxscript") if m in sys.modules)
print(json.dumps({{"hits": len(hits), "heavy": heavy}}))
"""


def test_query_path_imports_no_torch():
    bundle = kit.bundle()
    script = _SCRIPT.format(bundle=str(bundle))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"hits": 3, "heavy": []}
