"""``lanesad-eval offline|live BAG --out DIR``: score a lane detector on a recorded drive and write a report.

Both modes write a report folder: metrics.json, report.md, plots (per-frame accuracy, latency
histogram, slot confusion) and an overlay video of the worst (or all) frames. A damaged bag is
scored as far as it can be read; the problems are listed in the report and the exit status is 1.
Nothing readable at all: exit status 2, report with the error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lanesad_ros.data.frames import DataError
from lanesad_ros.evaluation.report import write_report
from lanesad_ros.evaluation.scoring import ModelRun, build_metrics, load_labels
from lanesad_ros.ros.bag.typestore import BagError
from lanesad_ros.ros.evaluate import open_reader, run_live, run_offline


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lanesad-eval", description="Score lane detection on a rosbag2 drive.")
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("offline", "live"):
        p = sub.add_parser(mode, help="run the Detector directly" if mode == "offline"
                           else "play the bag over ROS into the lane detector node")
        p.add_argument("bag", help="rosbag2 folder (or .mcap / .db3 file)")
        p.add_argument("--out", required=True, help="report folder")
        p.add_argument("--weights", help="weights file (default: the shipped weights)")
        p.add_argument("--image-topic", help="image topic (default: the bag's only image topic, or /image_raw)")
        gt = p.add_mutually_exclusive_group()
        gt.add_argument("--gt-topic", default="/lanes_gt", help="LaneArray ground-truth topic in the bag")
        gt.add_argument("--labels", help="TuSimple label file (.json) or CULane list (.txt), matched by frame index")
        p.add_argument("--labels-root", help="CULane root the list's paths are relative to (default: above list/)")
        p.add_argument("--video", choices=("worst", "all", "none"), default="worst",
                       help="overlay video of the worst frames (default), every frame, or none")
        p.add_argument("--worst", type=int, default=20, help="frames in the worst-frames video")
        p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
        if mode == "offline":
            p.add_argument("--compare", nargs=2, metavar=("W1", "W2"), help="score two weights files side by side")
            p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
            p.add_argument("--backend", default="auto", help="detector backend (auto, torch, onnxruntime, ...)")
        else:
            p.add_argument("--spawn", action="store_true", help="start the lane_detector node as a separate process")
            p.add_argument("--rate", type=float, default=1.0, help="replay speed (1 = the bag's own pace)")
            p.add_argument("--lanes-topic", default="/lanes")
            p.add_argument("--startup-timeout", type=float, default=90.0,
                           help="seconds to wait for the detector to appear")
            p.add_argument("--settle", type=float, default=3.0, help="seconds to wait for late answers")
            p.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                           help="extra parameter for the spawned node (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.labels:
        args.gt_topic = None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    runs: list[ModelRun] = []
    context: dict = {}
    fatal = None
    try:
        labels = load_labels(args.labels, args.labels_root) if args.labels else None
        if args.mode == "offline":
            runs, context = run_offline(args, labels, problems)
        else:
            runs, context = run_live(args, labels, problems)
    except (BagError, DataError, ValueError, RuntimeError, OSError) as exc:
        fatal = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (BagError, DataError)) else str(exc)
        problems.append(fatal)
        labels = None
    metrics = build_metrics(args.mode, args, runs, context, problems)
    fps = 10.0
    if runs and len(runs[0].results) > 1:
        span = (runs[0].results[-1].stamp_ns - runs[0].results[0].stamp_ns) / 1e9
        fps = max(1.0, min(60.0, (len(runs[0].results) - 1) / span)) if span > 0 else 10.0
    factory = (lambda: open_reader(args, labels)) if runs else None
    metrics = write_report(out, metrics, runs, factory, args.video, args.worst, fps)
    summary = f"{metrics['frames']} frames"
    if "tusimple" in metrics:
        t = metrics["tusimple"]
        summary += f", TuSimple accuracy {t['accuracy']:.4f} FP {t['fp']:.4f} FN {t['fn']:.4f}"
    lat = metrics.get("latency_ms", {})
    if lat.get("count"):
        summary += f", {lat['kind']} latency median {lat['median']:.1f} ms"
    if args.mode == "live" and runs:
        summary += f", dropped {metrics.get('dropped', 0)}"
    print(f"lanesad-eval {args.mode}: {summary}; report in {out}")
    for p in metrics["errors"]:
        print(f"lanesad-eval: problem: {p}", file=sys.stderr)
    if fatal is not None:
        print(f"lanesad-eval: error: {fatal}", file=sys.stderr)
        return 2
    return 1 if metrics["errors"] else 0
