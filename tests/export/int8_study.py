"""Where int8 loses accuracy on a trained student, and what each int8 recipe costs (docs/quantization.md).

Not a test (pytest does not collect it): a reproduction script for the figures in
docs/quantization.md. It exports the student's fp32 graph with fastattr.export, builds the same
64 parity inputs as ``export_embedder`` (32 random, 32 from the first 256 training items), then
for each recipe prints the min / mean cosine to the torch embedder on both halves; with
``--teacher`` also the mAP change on the teacher's test queries (``variant_maps``, as the demo
measures it), the fidelity to the fp32 ranking over all teacher queries, and the batch-1 CPU
latency (median of 30 interleaved runs per round)::

    python tests/export/int8_study.py --student .fastattr/demo/student --dataset .fastattr/demo/world \\
        --teacher .fastattr/demo/teacher --work /tmp/int8work --sweep

Recipes: ``former`` is what --int8 wrote before issue 22 (quantize_dynamic defaults: weights one
scale per tensor, embedding tables too); ``to_int8`` is what it writes now; ``static*`` are
calibrated QDQ graphs (quantize_static, per-channel weights, activation ranges from 256 training
images and captions preprocessed as the runtime does).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np


def _scopes(model: Any) -> dict[str, tuple[str, str]]:
    """node name -> (top-level module: image_encoder / text_encoder / head, innermost module path)."""
    out = {}
    for node in model.graph.node:
        scope = [p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"]
        names = ast.literal_eval(scope[0]) if scope else []
        out[node.name] = (names[1] if len(names) > 1 else "", names[-2] if len(names) > 1 else "")
    return out


def _is_ffn_output(scope: tuple[str, str]) -> bool:
    """A BERT layer's FFN output Linear (the one after GELU): text_encoder.*.layer.N.output.dense."""
    return scope[0] == "text_encoder" and scope[1].endswith(".output.dense") and ".attention." not in scope[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--teacher", help="teacher set: adds mAP, fidelity and latency")
    parser.add_argument("--work", required=True, help="scratch folder (graphs are written here)")
    parser.add_argument("--sweep", action="store_true", help="also quantize each encoder node alone (slow)")
    parser.add_argument("--latency-rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    from fastattr.data import open_dataset
    from fastattr.export import export_student, to_int8
    from fastattr.export.parity import _onnx_outputs, _torch_outputs, compare, make_parity_inputs
    from fastattr.preprocess import Tokenizer, resize_normalize
    from fastattr.student import load_embedder

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    export = export_student(args.student, work / "export", dataset=args.dataset, overwrite=True)
    fp32 = export.onnx_path
    module, spec = load_embedder(args.student)
    pre = spec.preprocess
    tokenizer = Tokenizer.from_file(spec.tokenizer, max_length=pre.max_length)
    data = open_dataset(args.dataset)
    take = min(len(data), 256)
    images, captions = np.asarray(data.images[:take]), list(data.captions[:take])
    halves = {"random": make_parity_inputs(pre, tokenizer, n=32, seed=0),
              "real": make_parity_inputs(pre, tokenizer, n=32, seed=1, images=images, captions=captions)}
    reference = {k: _torch_outputs(module, v) for k, v in halves.items()}
    model = onnx.load(str(fp32))
    scopes = _scopes(model)
    results: dict[str, Any] = {}

    def measure(name: str, path: Path) -> None:
        row = {}
        for half, inputs in halves.items():
            parity = compare(reference[half], _onnx_outputs(path, inputs))
            row[half] = {"min_cosine": parity.min_cosine, "mean_cosine": parity.mean_cosine}
        row["min_cosine"] = min(row["random"]["min_cosine"], row["real"]["min_cosine"])
        row["path"], row["mb"] = str(path), path.stat().st_size / 1e6
        results[name] = row
        print(f"{name:34s} min cos random {row['random']['min_cosine']:.5f} real {row['real']['min_cosine']:.5f}"
              f" | mean random {row['random']['mean_cosine']:.5f} real {row['real']['mean_cosine']:.5f}"
              f" | {row['mb']:.1f} MB", flush=True)

    def dynamic(name: str, **kwargs: Any) -> Path:
        path = work / f"{name}.onnx"
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, **kwargs)
        measure(name, path)
        return path

    def part(name: str) -> list[str]:
        nodes = [n for n, s in scopes.items() if s[0] == name]
        return nodes + [f"{n}_MatMul" for n in nodes]  # quantize_dynamic renames a Gemm it rewrites as MatMul

    # 1. Where the former recipe loses: per part, per option.
    dynamic("former")
    for name in ("image_encoder", "text_encoder", "head"):
        dynamic(f"former, only {name}", nodes_to_quantize=part(name))
    dynamic("former + per-channel weights", per_channel=True)
    dynamic("former - embedding tables", op_types_to_quantize=["MatMul", "Conv"])
    dynamic("former + reduce_range", reduce_range=True)
    to_int8(fp32, work / "to_int8.onnx")
    measure("to_int8", work / "to_int8.onnx")
    ffn_out = [n for n, s in scopes.items() if _is_ffn_output(s)]
    dynamic("to_int8 - FFN outputs of layers 0-3", per_channel=True, op_types_to_quantize=["MatMul"],
            nodes_to_exclude=[n for n in ffn_out if any(f"layer.{i}." in scopes[n][1] for i in range(4))])

    # Outliers: activation max / p99.9 at each text Linear's input, and weight max vs median channel max.
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    linears = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits
               and scopes[n.name][0] == "text_encoder"]
    probe = onnx.load(str(fp32))
    for name in {n.input[0] for n in linears}:
        probe.graph.output.append(onnx.ValueInfoProto(name=name))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    seen: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for batch in halves["real"].batches:
        for key, value in zip(names, session.run(None, batch)):
            seen[key].append(np.abs(value).ravel())
    print("\ntext encoder Linear inputs (real inputs) and weights:")
    outliers = []
    for node in linears:
        act = np.concatenate(seen[node.input[0]])
        weight = np.abs(inits[node.input[1]])
        row = {"module": scopes[node.name][1], "act_max": float(act.max()), "act_p999": float(np.percentile(act, 99.9)),
               "w_max": float(weight.max()), "w_median_channel_max": float(np.median(weight.max(0)))}
        outliers.append(row)
        print(f"  {row['module'][-40:]:40s} act max {row['act_max']:7.2f} p99.9 {row['act_p999']:6.2f}"
              f" | weight max {row['w_max']:6.3f} median channel max {row['w_median_channel_max']:6.3f}")
    results["_outliers"] = outliers

    if args.sweep:
        print("\nquantizing one encoder node alone (former recipe), worst 8:")
        sweep = []
        for node in model.graph.node:
            if node.op_type in ("MatMul", "Conv", "Gather") and scopes[node.name][0] in ("image_encoder", "text_encoder"):
                path = work / "one.onnx"
                quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, nodes_to_quantize=[node.name])
                worst = min(compare(reference[h], _onnx_outputs(path, halves[h])).min_cosine for h in halves)
                sweep.append((worst, scopes[node.name][1]))
        for worst, module_path in sorted(sweep)[:8]:
            print(f"  {module_path:64s} min cos {worst:.5f}")
        results["_sweep"] = sorted(sweep)

    # 2. Static QDQ, calibrated on training images and captions as the runtime preprocesses them.
    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            batches = []
            for start in range(0, take, 16):
                ids, mask = tokenizer(captions[start:start + 16])
                batches.append({"pixel_values": resize_normalize(list(images[start:start + 16]), pre),
                                "input_ids": ids, "attention_mask": mask})
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    attention = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in inits]

    def static(name: str, exclude: list[str]) -> None:
        path = work / f"{name}.onnx"
        quantize_static(str(fp32), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["MatMul", "Conv", "Gemm"], nodes_to_exclude=exclude)
        measure(name, path)

    print()
    static("static", [])
    static("static - attention", attention)
    static("static - attention - FFN outputs", attention + ffn_out)
    static("static - attention - FFN outputs - head", attention + ffn_out + part("head"))

    if args.teacher:
        _downstream(args, work, export, results)
    (work / "study.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {work / 'study.json'}")


def _downstream(args: argparse.Namespace, work: Path, export: Any, results: dict[str, Any]) -> None:
    """mAP change (variant_maps on the test queries), fidelity to fp32 over all queries, latency."""
    from fastattr.data import open_dataset
    from fastattr.export import load_export
    from fastattr.export.evaluate import variant_maps
    from fastattr.onnx_embedder import embed_items, make_session
    from fastattr.student.data import load_teacher_set
    from fastattr.student.metrics import cutoffs, map_at, mean_se

    picks = ["former", "to_int8", "to_int8 - FFN outputs of layers 0-3", "static - attention - FFN outputs",
             "static - attention - FFN outputs - head"]
    folder = work / "variants"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(export.root, folder)
    info = json.loads((folder / "export.json").read_text())
    for k, name in enumerate(picks):
        shutil.copyfile(results[name]["path"], folder / f"v{k}.onnx")
        info["files"][f"v{k}"] = f"v{k}.onnx"
    (folder / "export.json").write_text(json.dumps(info))
    maps = variant_maps(folder, args.dataset, args.teacher, threads=2)
    labels = {"embedder": "fp32", **{f"v{k}": name for k, name in enumerate(picks)}}
    print(f"\nmAP on {maps['n_test_queries']} test queries, L = {maps['L']}:")
    for role, row in maps["variants"].items():
        means = " ".join(f"{m['mean']:.4f}" for m in row["map"])
        changes = " ".join(f"{d:+.4f}" for d in row["delta_map"])
        print(f"  {labels[role]:40s} mAP {means} | change {changes}")
    results["_map"] = {labels[r]: v for r, v in maps["variants"].items()}

    exported = load_export(folder)
    data = open_dataset(args.dataset)
    teacher = load_teacher_set(args.teacher, n_items=len(data))
    queries = np.arange(len(teacher.captions))
    cuts = cutoffs(len(data))
    order = None
    print(f"\nfidelity: mAP against the fp32 embedder's own top-L, all {len(queries)} teacher queries:")
    paths = {"embedder": exported.onnx_path, **exported.variants()}
    for role, path in paths.items():
        common = dict(batch_size=128, threads=2, progress=False)
        items = embed_items(path, exported.spec, exported.tokenizer_path, data.images, list(data.captions), **common)
        vectors = embed_items(path, exported.spec, exported.tokenizer_path, teacher.query_images[queries],
                              list(teacher.captions), **common)
        scores = vectors @ items.T
        order = np.argsort(-scores, axis=1, kind="stable") if order is None else order
        fidelity = [mean_se(map_at(scores, order, cut))[0] for cut in cuts]
        results.setdefault("_fidelity", {})[labels[role]] = fidelity
        print(f"  {labels[role]:40s} " + " ".join(f"{f:.4f}" for f in fidelity))

    from fastattr.preprocess import Tokenizer, resize_normalize

    tokenizer = Tokenizer.from_file(exported.tokenizer_path, max_length=exported.spec.max_length)
    ids, mask = tokenizer([teacher.captions[0]])
    feed = {"pixel_values": resize_normalize([teacher.query_images[0]], exported.spec), "input_ids": ids,
            "attention_mask": mask}
    sessions = {role: make_session(path, device="cpu", threads=2) for role, path in paths.items()}
    for session in sessions.values():
        for _ in range(5):
            session.run(None, feed)
    print(f"\nbatch-1 latency, 2 threads, median of 30 interleaved runs ({os.cpu_count()} CPUs):")
    for rnd in range(args.latency_rounds):
        times: dict[str, list[float]] = {role: [] for role in sessions}
        for _ in range(30):
            for role, session in sessions.items():
                start = time.perf_counter()
                session.run(None, feed)
                times[role].append((time.perf_counter() - start) * 1e3)
        medians = {labels[r]: float(np.median(t)) for r, t in times.items()}
        results.setdefault("_latency_ms", []).append({"loadavg": os.getloadavg(), **medians})
        print(f"  round {rnd + 1} (load avg {os.getloadavg()[0]:.1f}): "
              + ", ".join(f"{name} {ms:.1f} ms" for name, ms in medians.items()))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
