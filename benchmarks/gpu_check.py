"""GPU check steps, run by benchmarks/gpu_check.sh on a CUDA machine (each step a subcommand).

    python benchmarks/gpu_check.py preflight               exit 2 at once without CUDA
    python benchmarks/gpu_check.py model   --out DIR       ENet-SAD 288x800: FP32, FP16, CUDA graphs, TensorRT
    python benchmarks/gpu_check.py detect  --out DIR       Detector.detect() end to end on a 1640x590 frame
    python benchmarks/gpu_check.py report  --out DIR       results.md from the steps' JSON files

Every timing synchronises the device and is the median of many calls after a warm-up. Targets
(issue 13): model <= 1 ms in FP16, detect() <= 3 ms. TensorRT comes from torch-tensorrt when
it imports, else from ONNX Runtime's TensorRT execution provider; when neither is installed
the row says so (it is not a failure of the check).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZE = (288, 800)


def fail(text: str) -> None:
    print(f"gpu_check: error: {text}", file=sys.stderr)
    sys.exit(2)


def cuda_torch():
    """torch, after checking that CUDA is usable; exits 2 with the reason otherwise."""
    import torch

    if not torch.cuda.is_available():
        fail(f"CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}; "
             f"torch.cuda.is_available() is False): run this on a machine with an NVIDIA GPU and a CUDA build of torch")
    return torch


def gpu_timed(torch, fn, runs: int = 200, warmup: int = 20) -> dict:
    """Median / p90 ms of ``fn`` measured with CUDA events (device time, after a sync)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "runs": runs}


def write(out: Path, name: str, data: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1, default=str))
    print(json.dumps(data, indent=1, default=str))


def machine(torch) -> dict:
    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
            "torch": torch.__version__, "python": platform.python_version(), "cpus": __import__("os").cpu_count(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def step_preflight(args) -> None:
    torch = cuda_torch()
    print(json.dumps(machine(torch)))


def step_model(args) -> None:
    torch = cuda_torch()
    from lanesad_ros.model import build_model

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    model = build_model("enet_sad", num_lanes=4, input_size=SIZE).cuda().eval()
    x = torch.randn(1, 3, *SIZE, device="cuda")
    rows, reference = [], None
    with torch.inference_mode():
        reference = model(x)[0].float()

        def add(name, fn, output=None):
            row = {"variant": name, **gpu_timed(torch, fn)}
            if output is not None:
                row["max_abs_diff_vs_fp32"] = float((output.float() - reference).abs().max())
            rows.append(row)
            print(row, flush=True)

        add("torch eager fp32", lambda: model(x))
        half = build_model("enet_sad", num_lanes=4, input_size=SIZE).cuda().eval()
        half.load_state_dict(model.state_dict())
        half = half.half().to(memory_format=torch.channels_last)
        xh = x.half().contiguous(memory_format=torch.channels_last)
        add("torch eager fp16 channels_last", lambda: half(xh), half(xh)[0])
        static_in = xh.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                half(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = half(static_in)
        graph.replay()
        add("CUDA graph fp16", graph.replay, static_out[0])
    rows.append(tensorrt_row(torch, model, x, reference))
    print(rows[-1], flush=True)
    write(Path(args.out), "model", {"machine": machine(torch), "input": f"{SIZE[0]}x{SIZE[1]}", "rows": rows})


def tensorrt_row(torch, model, x, reference) -> dict:
    """TensorRT FP16: torch-tensorrt when it imports, else ONNX Runtime's TensorRT provider."""
    try:
        import torch_tensorrt
    except ImportError as exc:
        torch_tensorrt, why = None, f"torch-tensorrt not importable ({exc})"
    if torch_tensorrt is not None:
        try:
            trt = torch_tensorrt.compile(model, ir="dynamo", inputs=[x], enabled_precisions={torch.half})
            with torch.inference_mode():
                out = trt(x)[0]
                row = {"variant": f"TensorRT fp16 (torch-tensorrt {torch_tensorrt.__version__})",
                       **gpu_timed(torch, lambda: trt(x))}
            row["max_abs_diff_vs_fp32"] = float((out.float() - reference).abs().max())
            return row
        except Exception as exc:  # report, then try the other route
            why = f"torch-tensorrt failed: {type(exc).__name__}: {exc}"
    try:
        import onnxruntime as ort

        if "TensorrtExecutionProvider" not in ort.get_available_providers():
            return {"variant": "TensorRT", "skipped": f"{why}; onnxruntime has no TensorRT provider "
                                                      f"({', '.join(ort.get_available_providers())})"}
        from lanesad_ros.model.export import export_onnx

        path = Path(tempfile.mkdtemp()) / "enet_sad_288x800.onnx"
        export_onnx(model.float(), path)
        session = ort.InferenceSession(str(path), providers=[("TensorrtExecutionProvider", {"trt_fp16_enable": True}),
                                                             "CUDAExecutionProvider"])
        feed = {"image": x.cpu().numpy()}
        out = session.run(["seg_logits"], feed)[0]
        start = time.perf_counter()
        times = []
        for i in range(220):
            start = time.perf_counter()
            session.run(["seg_logits"], feed)
            if i >= 20:
                times.append((time.perf_counter() - start) * 1e3)
        return {"variant": "TensorRT fp16 (onnxruntime TensorRT provider, host copies included)",
                "median_ms": statistics.median(times), "runs": len(times),
                "max_abs_diff_vs_fp32": float(np.abs(out - reference.cpu().numpy()).max())}
    except Exception as exc:
        return {"variant": "TensorRT", "skipped": f"{why}; onnxruntime route: {type(exc).__name__}: {exc}"}


def step_detect(args) -> None:
    torch = cuda_torch()
    import cv2

    from lanesad_ros.detector import Detector
    from lanesad_ros.model import build_model
    from lanesad_ros.model.weights import save_weights

    frame_path = REPO.parent / "shared" / "data" / "unlabeled" / "culane-urban"
    paths = sorted(frame_path.glob("*.jpg"))
    if paths:
        image, source = cv2.imread(str(paths[0])), str(paths[0])
    else:  # the device machine may not have the shared data: a textured frame of the same size
        rng = np.random.default_rng(0)
        image, source = cv2.GaussianBlur(rng.integers(0, 256, (590, 1640, 3), np.uint8), (5, 5), 0), "synthetic"
    image = cv2.resize(image, (1640, 590))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        random = Path(tmp) / "enet_sad_random_288x800.safetensors"
        save_weights(build_model("enet_sad", num_lanes=4, input_size=SIZE), random, {"crop_top": 0.3})
        for weights, label in ((random, "random weights 288x800"), (None, "shipped weights")):
            for backend in ("torch", "onnxruntime"):
                try:
                    detector = Detector.from_weights(weights, device="cuda", backend=backend)
                except Exception as exc:
                    rows.append({"weights": label, "backend": backend, "skipped": f"{type(exc).__name__}: {exc}"})
                    continue
                for _ in range(20):
                    detector.detect(image)
                stages, totals = {"preprocess": [], "inference": [], "postprocess": []}, []
                for _ in range(200):
                    start = time.perf_counter()
                    result = detector.detect(image)
                    totals.append((time.perf_counter() - start) * 1e3)
                    for key in stages:
                        stages[key].append(result.timings_ms[key])
                rows.append({"weights": label, "backend": detector.backend_name,
                             "input": "x".join(map(str, detector.preprocessor.input_size)),
                             "detect_median_ms": statistics.median(totals),
                             **{f"{k}_ms": statistics.median(v) for k, v in stages.items()}})
                print(rows[-1], flush=True)
    write(Path(args.out), "detect", {"machine": machine(torch), "frame": f"1640x590 ({source})", "rows": rows})


def step_report(args) -> None:
    out = Path(args.out)
    parts = {name: json.loads((out / f"{name}.json").read_text()) for name in ("model", "detect", "train")
             if (out / f"{name}.json").is_file()}
    m = next((p["machine"] for p in parts.values() if "machine" in p), {})
    lines = [f"# GPU check\n\n{m.get('date', '?')} | {m.get('gpu', '?')} ({m.get('memory_gib', '?')} GiB), "
             f"CUDA {m.get('cuda', '?')}, torch {m.get('torch', '?')}, {m.get('cpus', '?')} CPUs\n",
             "Targets (issue 13): model <= 1 ms FP16 at 288x800, detect() <= 3 ms on a 1640x590 frame.\n"]
    if "model" in parts:
        lines += ["## Model forward, ENet-SAD 288x800, batch 1 (CUDA events)\n",
                  "| variant | median ms | p90 ms | max abs diff vs fp32 |", "| --- | ---: | ---: | ---: |"]
        for r in parts["model"]["rows"]:
            if "skipped" in r:
                lines.append(f"| {r['variant']} | skipped: {r['skipped']} | | |")
            else:
                diff = f"{r['max_abs_diff_vs_fp32']:.1e}" if "max_abs_diff_vs_fp32" in r else "-"
                p90 = r.get("p90_ms", float("nan"))
                lines.append(f"| {r['variant']} | {r['median_ms']:.3f} | {p90:.3f} | {diff} |")
    if "detect" in parts:
        lines += [f"\n## detect() end to end, {parts['detect']['frame']}\n",
                  "| weights | backend | input | detect ms | preprocess | inference | postprocess |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
        for r in parts["detect"]["rows"]:
            if "skipped" in r:
                lines.append(f"| {r['weights']} | {r['backend']} | skipped: {r['skipped']} | | | | |")
            else:
                lines.append(f"| {r['weights']} | {r['backend']} | {r['input']} | {r['detect_median_ms']:.2f} | "
                             f"{r['preprocess_ms']:.2f} | {r['inference_ms']:.2f} | {r['postprocess_ms']:.2f} |")
    if "train" in parts:
        t = parts["train"]
        lines += ["\n## Training with AMP\n", f"{t.get('summary', '')}\n"]
    for name in ("tests", "train"):
        log = out / f"{name}.log"
        if log.is_file():
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            lines += [f"\n{name} log (last lines):\n", "```", *tail, "```"]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("preflight", "model", "detect", "report"))
    parser.add_argument("--out", default="gpu_results", help="folder for the JSON files and results.md")
    args = parser.parse_args(argv)
    {"preflight": step_preflight, "model": step_model, "detect": step_detect, "report": step_report}[args.step](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
