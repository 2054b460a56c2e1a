"""Input-size study, speed half: ``detect()`` on a 1280x720 frame at 144x400, 208x576 and 288x800.

    python benchmarks/bench_input_size.py [--weights W144 W208 W288] [--backends torch openvino]
                                          [--threads N] [--runs 40] [--json out.json]

For the input-size study in docs/training.md: the node must keep >= 25 FPS on this 2-core CPU with the fastest
backend. Every (size, backend) detector takes its turn frame by frame in one loop, so a
change in the load of a shared machine hits them alike; the table gives median / p90 ms,
FPS and the ratio to the 144x400 detector of the same backend. Without ``--weights`` each
size is a randomly initialised ENet-SAD (speed does not depend on the weight values).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench_pipeline import cpu_model, source_frame

from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.model import build_model
from lanesad_ros.model.weights import save_weights

SIZES = ((144, 400), (208, 576), (288, 800))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, nargs=3, metavar=("W144", "W208", "W288"),
                        help="trained weights of the three sizes (default: random ENet-SAD per size)")
    parser.add_argument("--backends", nargs="+", default=["torch", "openvino"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    tmp = tempfile.TemporaryDirectory()
    os.environ.setdefault("LANESAD_CACHE_DIR", str(Path(tmp.name) / "cache"))
    detectors, notes = {}, []
    for k, size in enumerate(SIZES):
        weights = args.weights[k] if args.weights else Path(tmp.name) / f"enet_sad_{size[0]}x{size[1]}.safetensors"
        if not args.weights:
            save_weights(build_model("enet_sad", num_lanes=4, input_size=size), weights, {"crop_top": 0.3})
        for backend in args.backends:
            try:
                detectors[(size, backend)] = Detector.from_weights(weights, device="cpu", backend=backend,
                                                                   threads=args.threads)
            except DetectorError as exc:
                notes.append(f"{size[0]}x{size[1]} {backend} unavailable: {exc}")
    frame = source_frame(1280, 720)
    for detector in detectors.values():
        for _ in range(args.warmup):
            detector.detect(frame)
    times = {key: [] for key in detectors}
    for _ in range(args.runs):
        for key, detector in detectors.items():
            start = time.perf_counter()
            detector.detect(frame)
            times[key].append((time.perf_counter() - start) * 1e3)
    rows = []
    for (size, backend), values in times.items():
        ordered = sorted(values)
        rows.append({"input": f"{size[0]}x{size[1]}", "backend": detectors[(size, backend)].backend_name,
                     "median_ms": statistics.median(ordered), "p90_ms": ordered[int(0.9 * (len(ordered) - 1))]})
    base = {row["backend"]: row["median_ms"] for row in rows if row["input"] == "144x400"}
    machine = (f"{cpu_model()}, {os.cpu_count()} CPUs, inference threads {args.threads}, "
               f"load average {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    date = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"# detect() by input size\n\n{date} | {machine}\n")
    print("command: `" + " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])) + "`\n")
    for note in notes + ([] if args.weights else ["random ENet-SAD per size (speed does not depend on weights)"]):
        print(f"- {note}")
    print("\n| input | backend | median ms | p90 ms | FPS | time vs 144x400 |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        row["fps"] = 1000.0 / row["median_ms"]
        row["vs_144x400"] = row["median_ms"] / base[row["backend"]] if row["backend"] in base else None
        ratio = f"{row['vs_144x400']:.2f}x" if row["vs_144x400"] else ""
        print(f"| {row['input']} | {row['backend']} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | "
              f"{row['fps']:.1f} | {ratio} |")
    if args.json:
        args.json.write_text(json.dumps({"date": date, "machine": machine, "results": rows}, indent=2) + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
