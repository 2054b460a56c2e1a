#!/usr/bin/env python3
"""Model forward latency on CPU, batch 1, per backend: eager fp32, eager channels_last,
torch.compile (with --compile), ONNX Runtime. Prints a markdown table with parameter
counts, median / p90 latency, FPS and the speed-up against eager measured in the same run.

    python benchmarks/bench_model.py [--models enet_sad,resnet18_sad] [--sizes 288x800,368x640]
                                     [--runs 30] [--warmup 5] [--compile] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from lanesad_ros.model import build_model, list_models
from lanesad_ros.model.export import export_onnx


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 288x800 (HxW), got {text!r}") from None
    return h, w


def _time_calls(fn, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _stats(times: list[float]) -> dict:
    return {
        "median_ms": statistics.median(times),
        "p90_ms": float(np.percentile(times, 90)),
        "runs": len(times),
    }


def bench_one(name: str, size: tuple[int, int], args) -> list[dict]:
    torch.manual_seed(0)
    model = build_model(name, input_size=size).eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 3, *size)
    rows = []

    def record(backend: str, times: list[float], **extra):
        rows.append({"model": name, "params": params, "size": list(size), "backend": backend, **_stats(times), **extra})
        print(f"  {name} {size[0]}x{size[1]} {backend}: median {rows[-1]['median_ms']:.1f} ms", file=sys.stderr)

    with torch.inference_mode():
        record("torch eager fp32", _time_calls(lambda: model(x), args.warmup, args.runs))
        cl_model = build_model(name, input_size=size).eval()
        cl_model.load_state_dict(model.state_dict())
        cl_model = cl_model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        record("torch eager channels_last", _time_calls(lambda: cl_model(x_cl), args.warmup, args.runs))
    if args.compile:
        compiled = torch.compile(model)
        with torch.inference_mode():
            start = time.perf_counter()
            compiled(x)
            compile_s = time.perf_counter() - start
            # Inductor keeps compiling in the background after the first call: warm up longer.
            warmup = max(args.warmup, 10)
            record("torch.compile", _time_calls(lambda: compiled(x), warmup, args.runs), compile_s=compile_s)
    if not args.no_onnx:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / f"{name}.onnx")
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {"image": x.numpy()}
        record("onnxruntime cpu", _time_calls(lambda: session.run(None, feed), args.warmup, args.runs))
    eager = rows[0]["median_ms"]
    for row in rows:
        row["fps"] = 1000.0 / row["median_ms"]
        row["speedup_vs_eager"] = eager / row["median_ms"]
    return rows


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime as ort

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def markdown(rows: list[dict], info: dict) -> str:
    lines = [
        f"Model forward, CPU, batch 1 — {info['date']}, {info['cpu']} ({info['cpu_count']} cores, "
        f"{info['torch_threads']} torch threads), torch {info['torch']}, onnxruntime {info['onnxruntime']}",
        f"Command: `{info['command']}`",
        "",
        "| model | params (M) | input HxW | backend | median ms | p90 ms | FPS | speed-up vs eager |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.3f} | {r['size'][0]}x{r['size'][1]} | {r['backend']} | "
            f"{r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['fps']:.1f} | {r['speedup_vs_eager']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(list_models()), help="comma-separated model names")
    parser.add_argument("--sizes", default="288x800,368x640", help="comma-separated HxW input sizes")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per backend")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT intra-op threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(list_models())}")
    sizes = [_parse_size(s) for s in args.sizes.split(",") if s]
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    rows = [row for name in models for size in sizes for row in bench_one(name, size, args)]
    print(markdown(rows, info))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
