#!/usr/bin/env python3
"""Model forward latency on CPU, batch 1, per backend: eager fp32, eager channels_last,
torch.compile (with --compile), ONNX Runtime (plain, and tuned as the Detector runs it), OpenVINO
fp32 (as the Detector runs it) and with the bf16 precision hint (on CPUs with bf16; not used by
the Detector: it moves the lane maps). Prints a markdown table with parameter counts, median /
p90 latency, FPS, the speed-up against eager and the largest difference of the lane logits from
eager, all measured in the same run with the backends taking turns call by call.

    python benchmarks/bench_model.py [--models enet_sad,resnet18_sad] [--sizes 288x800,368x640]
                                     [--runs 30] [--warmup 5] [--threads N] [--compile] [--json OUT]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import torch

from lanesad_ros.model import build_model, list_models
from lanesad_ros.model.export import export_onnx, pool_indices_as_arithmetic


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 288x800 (HxW), got {text!r}") from None
    return h, w


def _time_round_robin(fns: dict, warmup: int, runs: int) -> dict[str, list[float]]:
    """Wall times in ms per candidate, the candidates taking turns call by call: on a CPU shared
    with other jobs the load changes over a run, and turns spread that change over all of them."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def _stats(times: list[float]) -> dict:
    return {
        "median_ms": statistics.median(times),
        "p90_ms": float(np.percentile(times, 90)),
        "runs": len(times),
    }


def _ort_session(path: Path, threads: int, tuned: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if tuned:  # what the Detector's onnxruntime backend does on the CPU
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _openvino_request(path: Path, size: tuple[int, int], threads: int, precision: str):
    import openvino as ov

    core = ov.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return None
    graph = core.read_model(str(path))
    graph.reshape({"image": [1, 3, *size]})
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads,
              "INFERENCE_PRECISION_HINT": precision}
    return core.compile_model(graph, "CPU", config).create_infer_request()


def bench_one(name: str, size: tuple[int, int], args) -> list[dict]:
    torch.manual_seed(0)
    model = build_model(name, input_size=size).eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 3, *size)
    threads = torch.get_num_threads()
    fns, outputs, extra = {}, {}, {}
    with torch.inference_mode():
        reference = model(x)[0].numpy()
    fns["torch eager fp32"] = lambda: model(x)
    cl_model = build_model(name, input_size=size).eval()
    cl_model.load_state_dict(model.state_dict())
    cl_model = cl_model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    fns["torch eager channels_last"] = lambda: cl_model(x_cl)
    if args.compile:
        compiled = torch.compile(model)
        with torch.inference_mode():
            start = time.perf_counter()
            compiled(x)
            extra["torch.compile"] = {"compile_s": time.perf_counter() - start}
            for _ in range(10):  # Inductor keeps compiling in the background after the first call
                compiled(x)
        fns["torch.compile"] = lambda: compiled(x)
    tmp = tempfile.TemporaryDirectory()
    if not args.no_onnx:
        feed = {"image": x.numpy()}
        path = export_onnx(model, Path(tmp.name) / f"{name}.onnx")
        fast_path = Path(tmp.name) / f"{name}-poolarith.onnx"
        onnx.save(pool_indices_as_arithmetic(onnx.load(str(path))), str(fast_path))
        plain = _ort_session(path, threads, tuned=False)
        tuned = _ort_session(fast_path, threads, tuned=True)
        fns["onnxruntime cpu"] = lambda: plain.run(None, feed)
        fns["onnxruntime cpu tuned (Detector)"] = lambda: tuned.run(None, feed)
        if importlib.util.find_spec("openvino") is not None and not args.no_openvino:
            for precision in ("f32", "bf16"):
                request = _openvino_request(fast_path, size, threads, precision)
                if request is not None:
                    label = "openvino cpu fp32 (Detector)" if precision == "f32" else "openvino cpu bf16 hint"
                    fns[label] = lambda r=request: r.infer(feed)
    rows = []
    with torch.inference_mode():
        for backend, fn in fns.items():
            out = fn()
            seg = out[0] if isinstance(out, (tuple, list)) else out["seg_logits"]
            seg = seg.numpy() if isinstance(seg, torch.Tensor) else np.asarray(seg)
            outputs[backend] = float(np.abs(seg - reference).max())
        times = _time_round_robin(fns, args.warmup, args.runs)
    tmp.cleanup()
    eager = statistics.median(times["torch eager fp32"])
    for backend, t in times.items():
        row = {"model": name, "params": params, "size": list(size), "backend": backend, "threads": threads,
               **_stats(t), "max_abs_diff_vs_eager": outputs[backend], **extra.get(backend, {})}
        row["fps"] = 1000.0 / row["median_ms"]
        row["speedup_vs_eager"] = eager / row["median_ms"]
        rows.append(row)
        print(f"  {name} {size[0]}x{size[1]} {backend}: median {row['median_ms']:.1f} ms", file=sys.stderr)
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

    try:
        import openvino

        openvino_version = openvino.__version__.split("-")[0]
    except ImportError:
        openvino_version = "not installed"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": list(os.getloadavg()),
        "openvino": openvino_version,
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
        f"{info['torch_threads']} threads for every backend), torch {info['torch']}, onnxruntime "
        f"{info['onnxruntime']}, openvino {info['openvino']}, load average {info['load_average'][0]:.2f} at the start",
        f"Command: `{info['command']}`",
        "",
        "| model | params (M) | input HxW | backend | median ms | p90 ms | FPS | speed-up vs eager "
        "| max abs diff vs eager |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.3f} | {r['size'][0]}x{r['size'][1]} | {r['backend']} | "
            f"{r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['fps']:.1f} | {r['speedup_vs_eager']:.2f}x | "
            f"{r['max_abs_diff_vs_eager']:.1e} |"
        )
    lines.append(f"\nLoad average at the end: {os.getloadavg()[0]:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(list_models()), help="comma-separated model names")
    parser.add_argument("--sizes", default="288x800,368x640", help="comma-separated HxW input sizes")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per backend")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT intra-op threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--no-onnx", action="store_true",
                        help="skip ONNX Runtime and OpenVINO (both read the ONNX export)")
    parser.add_argument("--no-openvino", action="store_true", help="skip OpenVINO")
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
