"""OpenVINO fp32 vs INT8 (NNCF, calibrated on real frames), side by side, with the accuracy guard.

    python benchmarks/bench_int8.py [--threads 2] [--rounds 5] [--runs 20] [--frames 150] [--json out.json]

Two rows:
- **shipped weights at their input size**: quantised with ``python -m lanesad_ros.training.quantize``'s
  code path, guarded on the held-out validation clips of ../shared/data/tusimple-train
  (config/train/splits/tusimple_val.txt; all labelled frames when that file is absent), so
  the row carries the TuSimple accuracy delta and the median lane shift;
- **288x800**: a seeded random-weights ENet-SAD at 288x800 (no trained weights exist at that
  size; speed does not depend on the weight values), calibrated on the same real frames; no
  accuracy figure (there is nothing to be accurate about).

Speed: the network forward (median ms) and ``Detector.detect()`` end to end on a real frame
(1640x590 for 288x800, 1280x720 for the shipped size), fp32 and INT8 measured in alternating
rounds in the same process so that the ratio holds on a busy machine; the load average is
printed with the figures. Caches go to a temporary directory (nothing is left in ~/.cache).
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
SHARED = REPO.parent / "shared" / "data"
FRAME_1280 = SHARED / "tusimple" / "clips" / "lanenet" / "0000" / "20.jpg"
FRAME_1640 = SHARED / "unlabeled" / "culane-urban"


def frame(size: tuple[int, int]) -> np.ndarray:
    """A real frame of (width, height): TuSimple 1280x720 or a CULane-style 1640x590."""
    if size == (1280, 720):
        image = cv2.imread(str(FRAME_1280))
    else:
        paths = sorted(FRAME_1640.glob("*.jpg"))
        image = cv2.imread(str(paths[0])) if paths else None
    if image is None:
        raise SystemExit(f"bench_int8.py: error: real frames not found under {SHARED}")
    return cv2.resize(image, size) if image.shape[1::-1] != size else image


def alternate(fns: dict, rounds: int, runs: int) -> dict:
    """Median ms of each callable, measured in ``rounds`` alternating blocks of ``runs`` calls."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(runs):
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def random_weights(folder: Path, input_size: tuple[int, int]) -> Path:
    import torch

    from lanesad_ros.model import build_model
    from lanesad_ros.model.weights import save_weights

    torch.manual_seed(0)
    model = build_model("enet_sad", num_lanes=4, input_size=input_size)
    path = folder / f"enet_sad_random_{input_size[0]}x{input_size[1]}.safetensors"
    save_weights(model, path, {"crop_top": 0.3, "training": {"data": "none (random init, speed benchmark only)"}})
    return path


def compare(weights: Path | None, source_size: tuple[int, int], labels: Path | None, split: Path | None,
            args) -> dict:
    from lanesad_ros.backends.openvino_backend import OpenVinoBackend
    from lanesad_ros.detector import Detector
    from lanesad_ros.training.quantize import quantize_weights

    load = os.getloadavg()[0]
    record = quantize_weights(weights, args.calibration, args.frames, labels, split, args.threads, log=lambda *_: None)
    fp32 = Detector.from_weights(weights, device="cpu", backend="openvino", threads=args.threads)
    int8 = Detector.from_weights(weights, device="cpu", backend="openvino", threads=args.threads)
    int8.use_backend(OpenVinoBackend(Path(record["folder"]) / "model.xml", args.threads, name="openvino-int8"),
                     "benchmark")
    probe = np.random.default_rng(0).standard_normal(fp32.input_shape).astype(np.float32)
    image = frame(source_size)
    forward = alternate({"fp32": lambda: fp32._backend(probe), "int8": lambda: int8._backend(probe)},
                        args.rounds, args.runs)
    e2e = alternate({"fp32": lambda: fp32.detect(image), "int8": lambda: int8.detect(image)}, args.rounds, args.runs)
    h, w = fp32.preprocessor.input_size
    return {"input": f"{h}x{w}", "weights": fp32.weights_name, "frame": f"{source_size[0]}x{source_size[1]}",
            "forward_ms": forward, "detect_ms": e2e, "guard": record, "load_before": load,
            "load_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_int8.py", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="inference threads (default 2: the 2-core goal)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--runs", type=int, default=20, help="calls per round")
    parser.add_argument("--frames", type=int, default=150, help="calibration frames")
    parser.add_argument("--calibration", type=Path, default=SHARED / "unlabeled" / "tusimple-frames")
    parser.add_argument("--labels", type=Path, default=SHARED / "tusimple-train" / "labels.json")
    parser.add_argument("--split", type=Path, default=REPO / "config" / "train" / "splits" / "tusimple_val.txt")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.calibration.is_dir() or not args.labels.is_file():
        parser.error(f"real frames not found ({args.calibration}, {args.labels})")
    split = args.split if args.split.is_file() else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="lanesad-int8-") as tmp:
        os.environ["LANESAD_CACHE_DIR"] = str(Path(tmp) / "cache")
        rows.append(compare(None, (1280, 720), args.labels, split, args))
        rows.append(compare(random_weights(Path(tmp), (288, 800)), (1640, 590), None, None, args))
    print(f"# OpenVINO fp32 vs INT8\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC | "
          f"{platform.machine()}, {os.cpu_count()} CPUs | {args.threads} inference threads | "
          f"command: `bench_int8.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    print("| input | weights | forward fp32 ms | forward int8 ms | speed-up | detect() fp32 ms (FPS) | "
          "detect() int8 ms (FPS) | frame | TuSimple acc fp32 / int8 (delta) | median lane shift px | guard | load |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- | --- |")
    for r in rows:
        g, f, d = r["guard"], r["forward_ms"], r["detect_ms"]
        accuracy = (f"{g['accuracy_fp32']:.4f} / {g['accuracy_int8']:.4f} ({g['accuracy_delta']:+.4f})"
                    if "accuracy_fp32" in g else "- (random weights)")
        shift = f"{g['median_shift_px']:.2f}" if "median_shift_px" in g else "-"
        print(f"| {r['input']} | {r['weights']} | {f['fp32']:.1f} | {f['int8']:.1f} | {f['fp32'] / f['int8']:.2f}x | "
              f"{d['fp32']:.1f} ({1e3 / d['fp32']:.0f}) | {d['int8']:.1f} ({1e3 / d['int8']:.0f}) | {r['frame']} | "
              f"{accuracy} | {shift} | {'passed' if g['passed'] else 'not passed'} | "
              f"{r['load_before']:.2f} -> {r['load_after']:.2f} |")
    guard = rows[0]["guard"]
    print(f"\nguard: {guard['verdict']}\nvalidation: {guard.get('validation')}\n"
          f"calibration: {guard.get('calibration')}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
