"""``lanesad-eval``: score a lane detector on a recorded drive, look at it on unlabelled frames, calibrate it.

- ``offline|live BAG --out DIR``: a report folder: metrics.json, report.md, plots (per-frame
  accuracy, latency histogram, slot confusion, existence reliability, bird's-eye view of the
  ground-plane lanes) and an overlay video of the worst (or all) frames. A damaged bag is scored
  as far as it can be read; the problems are listed in the report and the exit status is 1.
  Nothing readable at all: exit status 2, report with the error.
- ``contact-sheet IMAGES... --out sheet.jpg``: overlays on unlabelled frames in one grid image.
- ``calibrate-existence VAL_BAG --weights W [--write]``: Platt / temperature scaling of the
  existence output fitted on validation frames, stored in W's metadata.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from lanesad_ros.data.frames import DataError
from lanesad_ros.detector import BACKENDS, Detector, DetectorError
from lanesad_ros.evaluation.calibration import calibrate_weights
from lanesad_ros.evaluation.contact_sheet import select_images, write_contact_sheet
from lanesad_ros.evaluation.plots import plot_reliability
from lanesad_ros.evaluation.report import write_report
from lanesad_ros.evaluation.scoring import ModelRun, build_metrics, load_labels
from lanesad_ros.existence import METHODS
from lanesad_ros.fileio import write_text_atomic
from lanesad_ros.model.weights import metadata_path
from lanesad_ros.ros.bag.typestore import BagError
from lanesad_ros.ros.evaluate import open_reader, run_live, run_offline

# The command's bound on closing a live replay's DDS participant (Replayer's docstring says why).
CLOSE_TIMEOUT_S = 30.0


def _positive_float(text: str) -> float:
    """argparse type: a number above 0 (``--rate 0`` failed only after the node was spawned)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _add_ground_truth_args(p: argparse.ArgumentParser) -> None:
    """The image topic and where the ground truth comes from (bag topic or label file)."""
    p.add_argument("--image-topic", help="image topic (default: the bag's only image topic, or /image_raw)")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument("--gt-topic", default="/lanes_gt", help="LaneArray ground-truth topic in the bag")
    gt.add_argument("--labels", help="TuSimple label file (.json) or CULane list (.txt), matched by frame index")
    p.add_argument("--labels-root", help="CULane root the list's paths are relative to (default: above list/)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="lanesad-eval", description="Score lane detection on a rosbag2 drive.")
    # subcommands take no abbreviated options either
    sub = parser.add_subparsers(dest="mode", required=True,
                                parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))
    for mode in ("offline", "live"):
        p = sub.add_parser(mode, help="run the Detector directly" if mode == "offline"
                           else "play the bag over ROS into the lane detector node")
        p.add_argument("bag", help="rosbag2 folder (or .mcap / .db3 file)")
        p.add_argument("--out", required=True, help="report folder")
        p.add_argument("--weights", help="weights file (default: the shipped weights)")
        _add_ground_truth_args(p)
        p.add_argument("--video", choices=("worst", "all", "none"), default="worst",
                       help="overlay video of the worst frames (default), every frame, or none")
        p.add_argument("--worst", type=int, default=20, help="frames in the worst-frames video")
        p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
        if mode == "offline":
            p.add_argument("--compare", nargs=2, metavar=("W1", "W2"), help="score two weights files side by side")
            p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
            p.add_argument("--backend", default="auto", choices=BACKENDS, help="detector backend")
        else:
            p.add_argument("--spawn", action="store_true", help="start the lane_detector node as a separate process")
            p.add_argument("--rate", type=_positive_float, default=1.0, help="replay speed (1 = the bag's own pace)")
            p.add_argument("--lanes-topic", default="/lanes")
            p.add_argument("--startup-timeout", type=float, default=90.0,
                           help="seconds to wait for the detector to appear")
            p.add_argument("--settle", type=float, default=3.0, help="seconds to wait for late answers")
            p.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                           help="extra parameter for the spawned node (repeatable)")
            p.add_argument("--node-params-file", metavar="YAML",
                           help="ROS parameters file for the spawned node (camera model, mounting, ...)")
    p = sub.add_parser("contact-sheet",
                       help="overlays of the detector's lanes on unlabelled images, in one grid image")
    p.add_argument("images", nargs="+", help="image files, folders or globs; the count is shared between them")
    p.add_argument("--out", required=True, help="grid image (.jpg or .png); a .json beside it lists the lanes")
    p.add_argument("--weights", help="weights file (default: the shipped weights)")
    p.add_argument("--count", type=int, default=24, help="images on the sheet (default 24)")
    p.add_argument("--columns", type=int, default=6)
    p.add_argument("--tile-width", type=int, default=480,
                   help="tile width in pixels (height: the images' median aspect)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="detector backend")
    p = sub.add_parser("calibrate-existence",
                       help="fit the existence calibration of a weights file on labelled validation frames")
    p.add_argument("bag", help="rosbag2 of the VALIDATION frames with ground truth (never the reported test frames)")
    p.add_argument("--weights", required=True, help="weights file whose metadata gets the calibration")
    p.add_argument("--out", help="folder for the reliability diagram and calibration.json")
    _add_ground_truth_args(p)
    p.add_argument("--method", choices=METHODS, default="platt",
                   help="platt (scale and bias of the logit, default) or temperature (scale only)")
    p.add_argument("--bins", type=int, default=10, help="reliability bins")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    p.add_argument("--write", action="store_true", help="store the fit in the weights' .json metadata")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="detector backend")
    for command_parser in sub.choices.values():  # main reports errors with the subcommand's usage
        command_parser.set_defaults(command_parser=command_parser)
    return parser


def contact_sheet_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.count < 1 or args.columns < 1 or args.tile_width < 16:
        parser.error("--count and --columns must be >= 1 and --tile-width >= 16")
    try:
        paths = select_images(args.images, args.count)
        detector = Detector.from_weights(args.weights, device=args.device, backend=args.backend)
        summary = write_contact_sheet(detector.detect, paths, args.out, columns=args.columns,
                                      tile_size=(args.tile_width, None))
    except (ValueError, OSError) as exc:  # DetectorError is a ValueError
        parser.error(str(exc))
    lanes = sum(len(s["lanes"]) for s in summary)
    print(f"lanesad-eval contact-sheet: {len(summary)} images, {lanes} lanes, weights {detector.weights_name}; "
          f"sheet {args.out}, lanes listed in {Path(args.out).with_suffix('.json')}")
    return 0


def calibrate_existence_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.labels:
        args.gt_topic = None
    if args.bins < 1:
        parser.error("--bins must be >= 1")
    try:
        labels = load_labels(args.labels, args.labels_root) if args.labels else None
        with open_reader(args, labels) as reader:
            result = calibrate_weights(args.weights, reader.frames(), method=args.method, bins=args.bins,
                                       source=str(args.bag), max_frames=args.max_frames, write=args.write,
                                       device=args.device, backend=args.backend)
    except (BagError, DataError, ValueError, OSError) as exc:
        parser.error(str(exc))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        # Lazy: matplotlib is an optional dependency (setup.py extra "eval") and slow to import.
        import matplotlib

        matplotlib.use("Agg")
        plot_reliability({"uncalibrated": result["before"], f"{args.method} (in-sample)": result["after"]},
                         out / "existence_reliability.png", title=f"existence calibration on {Path(args.bag).name}")
        write_text_atomic(out / "calibration.json", json.dumps(result, indent=2))
    fit, before, after = result["fit"], result["before"], result["after"]
    threshold = result["exist_threshold"]
    print(f"lanesad-eval calibrate-existence: {result['frames']} frames, {before['samples']} slots "
          f"({before['positives']} with a lane); {fit['method']} scale {fit['scale']:.4f} bias {fit['bias']:.4f}; "
          f"ECE {before['ece']:.4f} -> {after['ece']:.4f} (in-sample), NLL {before['nll']:.4f} -> {after['nll']:.4f}; "
          f"exist_threshold {threshold['before']:.4f} -> {threshold['after']:.4f}"
          + (f"; written to {metadata_path(args.weights)}" if args.write else " (not written: --write)"))
    return 0


def _figures(metrics: dict) -> str:
    """TuSimple accuracy / FP / FN, CULane F1 and median latency of one model's (or the run's) metrics."""
    parts = []
    if "tusimple" in metrics:
        t = metrics["tusimple"]
        parts.append(f"TuSimple accuracy {t['accuracy']:.4f} FP {t['fp']:.4f} FN {t['fn']:.4f}")
    if "culane" in metrics:  # F1 is undefined (None) without predicted or labelled lanes, as the official tool's nan
        f1 = metrics["culane"]["f1"]
        parts.append(f"CULane F1 {'undefined' if f1 is None else f'{f1:.4f}'}")
    lat = metrics.get("latency_ms", {})
    if lat.get("count"):
        parts.append(f"{lat['kind']} latency median {lat['median']:.1f} ms")
    return ", ".join(parts)


def console_main() -> int:
    """The ``lanesad-eval`` command: :func:`main`, and a live replay whose DDS participant does not close
    within ``CLOSE_TIMEOUT_S`` ends the process (status 1, ``Timeout`` and the Python stacks on stderr)."""
    return main(close_timeout=CLOSE_TIMEOUT_S)


def main(argv: list[str] | None = None, close_timeout: float | None = None) -> int:
    """``lanesad-eval`` with ``argv``; ``close_timeout``: see :class:`lanesad_ros.ros.replay.Replayer`."""
    args, unknown = build_parser().parse_known_args(argv)
    args.close_timeout = close_timeout
    parser = args.command_parser  # errors show the subcommand's usage, not the top level's
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.mode == "contact-sheet":
        return contact_sheet_main(args, parser)
    if args.mode == "calibrate-existence":
        return calibrate_existence_main(args, parser)
    if getattr(args, "node_params_file", None) and not Path(args.node_params_file).is_file():
        parser.error(f"--node-params-file {args.node_params_file}: no such file")
    return _scores_main(args)


def _scores_main(args: argparse.Namespace) -> int:
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
        known = (BagError, DataError, DetectorError)  # their messages name the problem; others get their type
        fatal = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
        problems.append(fatal)
        labels = None
    metrics = build_metrics(args.mode, args, runs, context, problems)
    fps = 10.0
    if runs and len(runs[0].results) > 1:
        span = (runs[0].results[-1].time_ns - runs[0].results[0].time_ns) / 1e9
        fps = max(1.0, min(60.0, (len(runs[0].results) - 1) / span)) if span > 0 else 10.0
    factory = (lambda: open_reader(args, labels)) if runs else None
    metrics = write_report(out, metrics, runs, factory, args.video, args.worst, fps)
    models = metrics.get("models") or []
    if len(models) > 1:  # --compare: every model's figures, named
        summary = f"{metrics['frames']} frames; " + "; ".join(f"{m['name']}: {_figures(m)}" for m in models)
    else:
        summary = ", ".join([f"{metrics['frames']} frames", _figures(metrics)]).rstrip(", ")
    if args.mode == "live" and runs:
        summary += f", dropped {metrics.get('dropped', 0)}"
    nothing_scored = fatal is not None and not metrics["frames"]  # no summary: the problems and the error alone
    if not nothing_scored:
        print(f"lanesad-eval {args.mode}: {summary}; report in {out}")
    for p in metrics["errors"]:
        if p != fatal:
            print(f"lanesad-eval: problem: {p}", file=sys.stderr)
    if nothing_scored:
        print(f"lanesad-eval: error: {fatal} (report in {out})", file=sys.stderr)
        return 2
    if fatal is not None:
        print(f"lanesad-eval: error: {fatal}", file=sys.stderr)
        return 2
    return 1 if metrics["errors"] else 0
