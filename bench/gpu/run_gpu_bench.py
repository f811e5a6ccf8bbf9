"""GPU query-path benchmark: the real-size embedder on ONNX Runtime's CUDA provider (fp32, fp16, IO binding).

    python bench/gpu/run_gpu_bench.py --out results/gpu            # from the repository root

With a GPU (onnxruntime-gpu and a visible CUDA device) it measures, within ``--budget-s``
(default 280 s for the whole run, a cold export of the model included, under the 5-minute bar;
sections that no longer fit are skipped and listed in the JSON):
  * the bare forward on CUDA, fp32 and fp16, batch 1 and a throughput batch, both with plain
    ``session.run`` (host inputs and outputs) and with IO binding (inputs already on the device,
    output left there), plus the host copy cost;
  * ``Attributor.query`` end to end with ``device="cuda"`` and its stage breakdown, at 118,287
    random index items (the index scan stays on the CPU).
Without a GPU it runs unchanged: it says clearly that no GPU was found, measures the CPU
provider briefly so the same code path is exercised, and writes the same JSON with
``"gpu": false``. The model is the cached export of ``bench/query`` (built here when missing,
which needs torch and transformers) or ``--model PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.query.timing import loadavg, machine_info, time_calls  # noqa: E402

PAPER_N = 118_287


def gpu_status() -> dict[str, Any]:
    """What this machine offers: nvidia-smi's GPU list and whether ORT has a usable CUDA provider."""
    import onnxruntime as ort

    status: dict[str, Any] = {"providers": ort.get_available_providers(), "nvidia_smi": None}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            status["nvidia_smi"] = out.stdout.strip() or out.stderr.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            status["nvidia_smi"] = f"nvidia-smi failed: {exc}"
    status["cuda_provider"] = "CUDAExecutionProvider" in status["providers"]
    return status


class Budget:
    """A wall-clock budget: sections check it and are skipped (with a note) once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, section: str, need_s: float) -> bool:
        if self.left() >= need_s:
            return True
        self.skipped.append(f"{section}: skipped, {self.left():.0f} s of budget left, needs about {need_s:.0f} s")
        return False


def make_session(path: Path, provider: str, threads: int | None) -> Any:
    """A plain ORT session on one provider (CPU is always appended as ORT's fallback)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    providers = [provider, "CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [provider]
    session = ort.InferenceSession(str(path), options, providers=providers)
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"asked ORT for {provider}, got {session.get_providers()} for {path.name}")
    return session


def feeds(batch: int, image_size: int, seq_len: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Random normalized pixels and [CLS] ... [SEP] token ids (the model's real input shapes)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, size=(batch, seq_len), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"pixel_values": rng.standard_normal((batch, 3, image_size, image_size), dtype=np.float32),
            "input_ids": ids, "attention_mask": np.ones((batch, seq_len), np.int64)}


def io_binding_forward(session: Any, feed: dict[str, np.ndarray], device: str) -> Callable[[], Any]:
    """A forward whose inputs already live on ``device`` and whose output stays there (IO binding)."""
    import onnxruntime as ort

    binding = session.io_binding()
    values = {name: ort.OrtValue.ortvalue_from_numpy(array, device, 0) for name, array in feed.items()}
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    binding.bind_output(session.get_outputs()[0].name, device)

    def run() -> Any:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return values  # keep the device buffers alive as long as the closure

    return run


def measure_forwards(models: dict[str, Path], provider: str, device: str, image_size: int, args: argparse.Namespace,
                     budget: Budget) -> list[dict[str, Any]]:
    """Bare forwards per precision and batch: plain run, IO binding, and the fp32 output parity of fp16."""
    rows = []
    reference: dict[int, np.ndarray] = {}
    for precision, path in models.items():
        if not budget.allows(f"forward {precision}", 30):
            continue
        session = make_session(path, provider, args.threads)
        for batch in args.batches:
            feed = feeds(batch, image_size)
            out = session.run(None, feed)[0]
            if precision == "fp32":
                reference[batch] = out
            row: dict[str, Any] = {"precision": precision, "batch": batch, "provider": session.get_providers()[0]}
            if precision != "fp32" and batch in reference:
                ref = reference[batch]
                row["min_cosine_vs_fp32"] = float(np.min(np.sum(ref * out, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))))
            row["run"] = time_calls(lambda: session.run(None, feed), n=args.n, warmup=3, max_seconds=args.section_s).to_dict()
            # On CPU this binds host buffers: it exercises the same code, and costs what plain run costs.
            row["io_binding"] = time_calls(io_binding_forward(session, feed, device), n=args.n, warmup=3,
                                           max_seconds=args.section_s).to_dict()
            row["items_per_s"] = round(batch / (row["io_binding"]["p50_ms"] / 1e3), 1)
            rows.append(row)
            print(f"[gpu-bench] {precision} batch {batch}: run p50 {row['run']['p50_ms']:.2f} ms, "
                  f"io binding p50 {row['io_binding']['p50_ms']:.2f} ms", flush=True)
    return rows


def measure_sdk(bundle: Path, device: str, args: argparse.Namespace, budget: Budget) -> list[dict[str, Any]]:
    """Attributor.query end to end (and its stages) on the given device, per available precision."""
    from bench.query.stages import sample_png, sample_prompt, sdk_breakdown, warm_index
    from fastattr import Attributor

    image, prompt = sample_png(512), sample_prompt()
    rows = []
    for precision in args.precisions:
        if not budget.allows(f"SDK {precision}", 40):
            continue
        try:
            attributor = Attributor.load(bundle, device=device, threads=args.threads, verify="sizes", precision=precision)
        except Exception as exc:  # a bundle without that variant: say so and go on
            rows.append({"precision": precision, "error": f"{type(exc).__name__}: {exc}"})
            continue
        warm_index(attributor.bundle, args.threads)
        e2e = time_calls(lambda: attributor.query(image, prompt, k=10), n=args.n, warmup=3, max_seconds=args.section_s)
        stages = sdk_breakdown(attributor, image, prompt, k=10, n=args.n, warmup=2, max_seconds=args.section_s)
        rows.append({"precision": precision, "device": attributor.device, "n_items": len(attributor),
                     "end_to_end": e2e.to_dict(), "stages": {k: v.to_dict() for k, v in stages.items()}})
        print(f"[gpu-bench] SDK {precision} on {attributor.device}: p50 {e2e.p50_ms:.2f} ms", flush=True)
    return rows


def prepare_models(args: argparse.Namespace, gpu: bool) -> tuple[dict[str, Path], Any, int]:
    """fp32 model (given, cached or exported now), its fp16 copy when a GPU will use it, and the image size."""
    from bench.query.bundles import export_realsize
    from bench.query.realsize import RealSizeSpec
    from bench.query.run import default_cache

    spec = RealSizeSpec.tiny() if args.quick else RealSizeSpec()
    exported = None
    if args.model:
        fp32 = Path(args.model)
    else:
        # A GPU run has no use for the int8 CPU variant: skipping it keeps a cold export short.
        name = f"export-{'tiny' if args.quick else 'real'}{'-gpu' if gpu else ''}"
        exported = export_realsize(Path(args.cache) / name, spec, int8=not gpu)
        fp32 = exported.onnx_path
    models = {"fp32": fp32}
    if gpu:
        from fastattr.export import to_fp16

        fp16 = Path(args.cache) / f"gpu-{fp32.stem}.fp16.onnx"
        if not fp16.is_file() or fp16.stat().st_mtime < fp32.stat().st_mtime:
            to_fp16(fp32, fp16)
        models["fp16"] = fp16
    return models, exported, spec.image_size


def main(argv: list[str] | None = None) -> int:
    """Run the GPU benchmark (or its CPU fallback) and write ``gpu_results.json`` into ``--out``."""
    from bench.query.run import default_cache

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("FASTATTR_BENCH_OUT", "results/gpu"))
    parser.add_argument("--cache", default=str(default_cache()))
    parser.add_argument("--model", default=None, help="an fp32 embedder.onnx to use instead of the bench/query export")
    parser.add_argument("--quick", action="store_true", help="tiny encoders (checks the script, not the GPU)")
    parser.add_argument("--budget-s", type=float, default=280.0,
                        help="wall-clock budget of the whole run, model export included (sections past it are skipped)")
    parser.add_argument("--section-s", type=float, default=20.0, help="longest time one measurement may take")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n-items", type=int, default=PAPER_N)
    args = parser.parse_args(argv)
    budget = Budget(args.budget_s)
    status = gpu_status()
    gpu = bool(status["cuda_provider"])
    result: dict[str, Any] = {"format": "fastattr-gpu-bench", "version": 1, "gpu": gpu, "gpu_status": status,
                              "machine": machine_info(), "notes": []}
    if gpu:
        provider, device = "CUDAExecutionProvider", "cuda"
        args.batches, args.precisions = [1, 32], ["fp32", "fp16"]
    else:
        note = ("NO GPU FOUND: onnxruntime offers no CUDAExecutionProvider "
                f"(providers {status['providers']}; nvidia-smi: {status['nvidia_smi'] or 'not installed'}). "
                "Measured the CPU provider briefly instead so the script's path runs; no CUDA figures.")
        print(f"[gpu-bench] {note}", flush=True)
        result["notes"].append(note)
        provider, device = "CPUExecutionProvider", "cpu"
        args.batches, args.precisions, args.n = [1], ["fp32"], min(args.n, 10)
    models, exported, image_size = prepare_models(args, gpu)
    result["models"] = {k: {"path": str(v), "bytes": v.stat().st_size} for k, v in models.items()}
    result["forward"] = measure_forwards(models, provider, device, image_size, args, budget)
    if exported is not None and budget.allows("SDK end to end", 60):
        from bench.query.bundles import random_bundle

        extra = {"embedder_fp16": models["fp16"]} if "fp16" in models else {}
        name = f"bundle-{'tiny' if args.quick else 'real'}-{args.n_items}{'-fp16' if extra else ''}"
        bundle = random_bundle(Path(args.cache) / name, exported, n_items=args.n_items, extra_variants=extra)
        result["sdk"] = measure_sdk(bundle, device, args, budget)
    result["skipped"] = budget.skipped
    result["wall_s"] = round(args.budget_s - budget.left(), 1)
    result["loadavg_end"] = loadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".gpu_results.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "gpu_results.json")
    print(f"[gpu-bench] wrote {out / 'gpu_results.json'} ({'GPU' if gpu else 'NO GPU: CPU fallback'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
