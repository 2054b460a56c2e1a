"""OpenVINO fp32 vs INT8 (NNCF, calibrated on real frames), side by side, with the accuracy guard.

    python benchmarks/bench_int8.py [--threads 2] [--rounds 5] [--runs 20] [--frames 150]
                                    [--config CFG] [--calibration DIR ...] [--json out.json]

Two rows:
- **shipped weights at their input size**: quantised with ``python -m lanesad_ros.training.quantize``'s
  code path: calibrated on frames of several cameras (its defaults), guarded per camera on the
  validation frames of ``--config`` (default config/train/enet_sad_multicam.yaml: TuSimple and
  CULane), so the row carries the TuSimple accuracy delta, the CULane F1 delta and each
  camera's median lane shift;
- **288x800**: a seeded random-weights ENet-SAD at 288x800 (no trained weights exist at that
  size; speed does not depend on the weight values), calibrated on the same real frames; no
  accuracy figure (there is nothing to be accurate about).
Run from the repository root (the config's paths are relative to it).

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


def compare(weights: Path | None, source_size: tuple[int, int], config: Path | None, args) -> dict:
    from lanesad_ros.backends.openvino_backend import OpenVinoBackend
    from lanesad_ros.detector import Detector
    from lanesad_ros.training.quantize import quantize_weights

    load = os.getloadavg()[0]
    record = quantize_weights(weights, args.calibration, args.frames, config, args.threads, log=lambda *_: None)
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


def guard_cells(guard: dict) -> tuple[str, str, str]:
    """Table cells of a guard record: TuSimple accuracy, CULane F1 (fp32 / int8 (delta)), median shifts."""
    cameras = guard.get("cameras", {})
    tus, cul = cameras.get("tusimple"), cameras.get("culane")
    accuracy = (f"{tus['accuracy_fp32']:.4f} / {tus['accuracy_int8']:.4f} ({tus['accuracy_delta']:+.4f})"
                if tus else "-")
    f1 = f"{cul['f1_fp32']:.4f} / {cul['f1_int8']:.4f} ({cul['f1_delta']:+.4f})" if cul else "-"
    shift = " / ".join(f"{c['median_shift_px']:.2f}" for c in (tus, cul) if c) or "-"
    return accuracy, f1, shift


def main(argv: list[str] | None = None) -> int:
    # Imported here, as in compare(): the quantize module brings torch and OpenVINO (seconds).
    from lanesad_ros.training.quantize import DEFAULT_CALIBRATION, DEFAULT_CONFIG

    parser = argparse.ArgumentParser(prog="bench_int8.py", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="inference threads (default 2: the 2-core goal)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--runs", type=int, default=20, help="calls per round")
    parser.add_argument("--frames", type=int, default=150, help="calibration frames")
    parser.add_argument("--calibration", type=Path, action="append",
                        help="folder of real frames, repeatable (default: the quantize command's)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config whose data.val guards the model")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.calibration = args.calibration or list(DEFAULT_CALIBRATION)
    missing = [str(p) for p in [*args.calibration, args.config] if not p.exists()]
    if missing:
        parser.error(f"real frames or config not found ({', '.join(missing)})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lanesad-int8-") as tmp:
        os.environ["LANESAD_CACHE_DIR"] = str(Path(tmp) / "cache")
        rows.append(compare(None, (1280, 720), args.config, args))
        rows.append(compare(random_weights(Path(tmp), (288, 800)), (1640, 590), None, args))
    print(f"# OpenVINO fp32 vs INT8\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC | "
          f"{platform.machine()}, {os.cpu_count()} CPUs | {args.threads} inference threads | "
          f"command: `bench_int8.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    print("| input | weights | forward fp32 ms | forward int8 ms | speed-up | detect() fp32 ms (FPS) | "
          "detect() int8 ms (FPS) | frame | TuSimple acc fp32 / int8 (delta) | CULane F1 fp32 / int8 (delta) | "
          "median lane shift px (TuSimple / CULane) | guard (every camera) | load |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | --- | --- |")
    for r in rows:
        g, f, d = r["guard"], r["forward_ms"], r["detect_ms"]
        accuracy, f1, shift = guard_cells(g) if "cameras" in g else ("- (random weights)", "-", "-")
        print(f"| {r['input']} | {r['weights']} | {f['fp32']:.1f} | {f['int8']:.1f} | {f['fp32'] / f['int8']:.2f}x | "
              f"{d['fp32']:.1f} ({1e3 / d['fp32']:.0f}) | {d['int8']:.1f} ({1e3 / d['int8']:.0f}) | {r['frame']} | "
              f"{accuracy} | {f1} | {shift} | {'passed' if g['passed'] else 'not passed'} | "
              f"{r['load_before']:.2f} -> {r['load_after']:.2f} |")
    guard = rows[0]["guard"]
    print(f"\nguard: {guard['verdict']}\nvalidation: {guard.get('validation')}\n"
          f"calibration: {guard.get('calibration')}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
