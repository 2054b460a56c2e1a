"""Benchmark of the detection pipeline stages: JPEG decode, preprocess, postprocess, detect().

    python benchmarks/bench_pipeline.py [--weights W | --random --input-size H W] [--threads N] [--runs 50]
                                        [--json out.json]

Prints a markdown table: median / p90 per stage, and detect() end to end per backend with
its ratio to PyTorch eager measured in the same run. Without --weights (or when the default
weights are absent) a randomly initialised ENet-SAD at --input-size is used: speed does not
depend on the weight values, and the output says so.
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
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE_FRAMES = REPO.parent / "shared" / "data" / "tusimple" / "unlabeled"


def timed(fn, runs: int, warmup: int) -> list[float]:
    """Wall times in ms of ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median_ms": statistics.median(ordered), "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
            "runs": len(ordered)}


def source_frame(width: int, height: int) -> np.ndarray:
    """A real road frame resized to the source size when shared data is there, else a textured fake."""
    frames = sorted(SAMPLE_FRAMES.glob("*.jpg")) if SAMPLE_FRAMES.is_dir() else []
    if frames:
        image = cv2.imread(str(frames[0]))
        if image is not None:
            return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 0)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synthetic_maps(preprocessor, num_lanes=4):
    """Softmax-like maps with one ridge per lane, as a trained net produces them."""
    h, w = preprocessor.input_size
    cols = np.arange(w, dtype=np.float32)
    rows = np.arange(h, dtype=np.float32)[:, None]
    maps = np.zeros((num_lanes + 1, h, w), np.float32)
    for k in range(num_lanes):
        centre = w * (0.2 + 0.2 * k) + (rows - h) * (k - 1.5) * 0.8
        maps[k + 1] = 0.9 * np.exp(-0.5 * ((cols[None, :] - centre) / 2.5) ** 2)
    maps[0] = 1.0 - maps[1:].sum(axis=0)
    return maps, np.full(num_lanes, 0.9, np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="weights file (default: shipped weights, else random ENet-SAD)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--input-size", type=int, nargs=2, default=(288, 800), metavar=("H", "W"),
                        help="model input for the random network (ignored with --weights)")
    parser.add_argument("--random", action="store_true",
                        help="time a random ENet-SAD at --input-size even when the shipped weights exist")
    parser.add_argument("--source-size", type=int, nargs=2, default=(1640, 590), metavar=("W", "H"))
    parser.add_argument("--crop-top", type=float, default=240 / 590, help="crop for the random network")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime", "openvino"],
                        help="Detector backends to time (one that is not installed is noted and skipped)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="CPU threads for inference (default: the libraries' own)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    from lanesad_ros.detector import Detector, DetectorError
    from lanesad_ros.postprocess import LaneDecoder, PostprocessConfig
    from lanesad_ros.weights import default_weights_path

    load_start = os.getloadavg()[0]
    notes = []
    tmp = None
    weights = args.weights
    if args.random and weights is not None:
        parser.error("--random and --weights exclude each other")
    if weights is None and not args.random and default_weights_path().is_file():
        weights = default_weights_path()
    if weights is None:
        from lanesad_ros.model import build_model
        from lanesad_ros.model.weights import save_weights

        tmp = tempfile.TemporaryDirectory()
        weights = Path(tmp.name) / "enet_sad_random.safetensors"
        save_weights(build_model("enet_sad", num_lanes=4, input_size=tuple(args.input_size)), weights,
                     {"crop_top": args.crop_top})
        os.environ.setdefault("LANESAD_CACHE_DIR", str(Path(tmp.name) / "onnx"))
        notes.append(f"no trained weights: random ENet-SAD at {args.input_size[0]}x{args.input_size[1]} "
                     "(speed does not depend on the weight values)")

    src_w, src_h = args.source_size
    frame = source_frame(src_w, src_h)
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    rows = []

    def add(stage, backend, times, **extra):
        rows.append({"stage": stage, "backend": backend, **summary(times), **extra})

    add(f"JPEG decode {src_w}x{src_h}", "cv2.imdecode",
        timed(lambda: cv2.imdecode(jpeg, cv2.IMREAD_COLOR), args.runs, args.warmup))

    detectors = {}
    for backend in args.backends:
        try:
            detectors[backend] = Detector.from_weights(weights, device=args.device, backend=backend,
                                                       threads=args.threads)
        except DetectorError as exc:
            notes.append(f"backend {backend} unavailable: {exc}")
    if not detectors:
        print("no backend could be loaded:\n" + "\n".join(notes), file=sys.stderr)
        return 1
    first = next(iter(detectors.values()))
    pre = first.preprocessor
    in_h, in_w = pre.input_size
    buffer = np.empty((3, in_h, in_w), np.float32)
    add(f"preprocess {src_w}x{src_h} -> {in_h}x{in_w}", "Preprocessor",
        timed(lambda: pre.normalise(pre.resize(frame), out=buffer), args.runs, args.warmup))

    maps, exist = synthetic_maps(pre)
    # the last row: the same decoding without convergence rule 3, for its cost
    for rows_name, extra, options in (("tusimple", "", {}), ("culane", "", {}),
                                      ("tusimple", ", rule 3 off", {"max_inner_slope": 0.0})):
        decoder = LaneDecoder(pre, PostprocessConfig(rows=rows_name, **options), num_lanes=4)
        lanes = decoder.decode(maps, exist, (src_w, src_h))
        add(f"postprocess 4 lanes ({rows_name} rows, hyperbola fit, slot rules{extra})", "numpy",
            timed(lambda d=decoder: d.decode(maps, exist, (src_w, src_h)), args.runs * 4, args.warmup),
            lanes=len(lanes))
    logits = torch.from_numpy(np.log(np.maximum(maps, 1e-6)))
    add("softmax of the sampled rows (Detector, CPU)", "numpy",
        timed(lambda: first._row_probs(logits, (src_w, src_h)), args.runs * 4, args.warmup))

    # The backends take turns frame by frame, so a change in the load of a shared CPU hits them alike.
    for detector in detectors.values():
        for _ in range(args.warmup):
            detector.detect(frame)
    times = {backend: [] for backend in detectors}
    parts = {backend: {} for backend in detectors}
    for _ in range(args.runs):
        for backend, detector in detectors.items():
            start = time.perf_counter()
            result = detector.detect(frame)
            times[backend].append((time.perf_counter() - start) * 1e3)
            for key, value in result.timings_ms.items():
                parts[backend].setdefault(key, []).append(value)
    eager = None
    for backend, detector in detectors.items():
        row = {"stage": f"detect() {src_w}x{src_h} frame, model {in_h}x{in_w}", "backend": detector.backend_name,
               **summary(times[backend]),
               "parts_median_ms": {k: statistics.median(v) for k, v in parts[backend].items()}}
        if backend == "torch":
            eager = row["median_ms"]
        rows.append(row)
    for row in rows:
        if row["stage"].startswith("detect()"):
            row["fps"] = 1000.0 / row["median_ms"]
            if eager:
                row["vs_torch_eager"] = eager / row["median_ms"]

    machine = (f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
               f"torch threads {torch.get_num_threads()}, inference threads {args.threads or 'library default'}, "
               f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}, "
               f"load average {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    header = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
              "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
              "weights": str(weights if tmp is None else "random ENet-SAD"), "notes": notes}
    print(f"# Pipeline benchmark\n\n{header['date']} | {machine}\n\ncommand: `{header['command']}`\n")
    for note in notes:
        print(f"- {note}")
    print("\n| stage | backend | median ms | p90 ms | FPS | vs torch eager |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        fps = f"{row['fps']:.1f}" if "fps" in row else ""
        ratio = f"{row['vs_torch_eager']:.2f}x" if "vs_torch_eager" in row else ""
        print(f"| {row['stage']} | {row['backend']} | {row['median_ms']:.3f} | {row['p90_ms']:.3f} | {fps} | {ratio} |")
    detect_rows = [row for row in rows if row["stage"].startswith("detect()")]
    fastest = min(detect_rows, key=lambda row: row["median_ms"])
    header["fastest"] = {"backend": fastest["backend"], "median_ms": fastest["median_ms"], "fps": fastest["fps"]}
    print(f"\nFastest backend: {fastest['backend']}, detect() median {fastest['median_ms']:.1f} ms "
          f"({fastest['fps']:.1f} FPS)")
    for row in rows:
        if "parts_median_ms" in row:
            parts = ", ".join(f"{k} {v:.2f} ms" for k, v in row["parts_median_ms"].items())
            print(f"\n{row['backend']} detect() breakdown (median): {parts}")
    if args.json:
        args.json.write_text(json.dumps({**header, "results": rows}, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
