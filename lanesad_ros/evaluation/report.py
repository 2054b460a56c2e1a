"""The report folder: metrics.json, report.md, plots and the overlay video of the worst (or all) frames.

Writes are atomic (``fileio``); a video that cannot be written is listed as an error, the scores are kept.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lanesad_ros.evaluation.plots import (
    plot_accuracy,
    plot_confusion,
    plot_ground_lanes,
    plot_latency,
    plot_reliability,
)
from lanesad_ros.evaluation.scoring import FrameResult, ModelRun
from lanesad_ros.fileio import write_text_atomic
from lanesad_ros.overlay import draw_lanes

GT_COLOUR = (255, 255, 255)


def select_frames(runs: list[ModelRun], mode: str, count: int) -> list[int]:
    """Frame indices for the overlay video: all, or the ``count`` worst (chronological order).

    Worst = lowest TuSimple accuracy (over all models), then most FP+FN; without ground
    truth: dropped first, then fewest lanes found.
    """
    n = len(runs[0].results)
    if mode == "all":
        return list(range(n))

    def badness(i: int) -> tuple:
        rs = [run.results[i] for run in runs]
        if any(r.tusimple for r in rs):
            acc = min(r.tusimple["accuracy"] if r.tusimple else 0.0 for r in rs)
            err = max((r.tusimple["fp"] + r.tusimple["fn"]) if r.tusimple else 2.0 for r in rs)
            return (acc, -err)
        return (0 if any(r.lanes is None for r in rs) else 1, min(len(r.lanes or []) for r in rs))

    return sorted(sorted(range(n), key=badness)[:count])


def _draw_frame(image: np.ndarray, gt: Any, res: FrameResult, name: str,
                previous: FrameResult | None = None) -> np.ndarray:
    """Ground truth in white, predictions in slot colours. A dropped frame shows the last
    lanes the detector did deliver (what a consumer would still be holding), marked as such."""

    canvas = image.copy()
    if gt is not None:
        for pts in gt.lanes:
            pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
            if len(pts) >= 2:
                cv2.polylines(canvas, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], False, GT_COLOUR, 2,
                              cv2.LINE_AA)
    text = f"#{res.index} {name}"
    lanes = res.lanes
    if lanes is None:
        text += "  NO ANSWER (dropped)"
        if previous is not None:
            text += f", last lanes from #{previous.index}"
            lanes = previous.lanes
    elif res.tusimple is not None:
        text += f"  acc {res.tusimple['accuracy']:.2f} fp {res.tusimple['fp']:.2f} fn {res.tusimple['fn']:.2f}"
    if res.latency_ms is not None:
        text += f"  {res.latency_ms:.0f} ms"
    return draw_lanes(canvas, lanes or [], text=text)


def write_video(path: Path, runs: list[ModelRun], indices: list[int], frames: Iterable, fps: float) -> int:
    """Overlay video (mp4v) of the chosen frames: ground truth in white, predictions by slot colour."""
    wanted = set(indices)
    writer = None
    written = 0
    tmp = path.with_name(path.stem + ".tmp.mp4")
    try:
        for index, frame in enumerate(frames):
            if index > max(indices, default=-1):
                break
            if index not in wanted:
                continue
            tiles = [_draw_frame(frame.image, frame.ground_truth, run.results[index], run.name,
                                 next((r for r in reversed(run.results[:index]) if r.lanes is not None), None))
                     for run in runs]
            canvas = tiles[0] if len(tiles) == 1 else cv2.hconcat(tiles)
            if writer is None:
                h, w = canvas.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise RuntimeError(f"cannot open video writer for {path}")
            writer.write(canvas)
            written += 1
    finally:
        if writer is not None:
            writer.release()
    if written:
        os.replace(tmp, path)
    return written


def _fmt(v: Any) -> str:
    if v is None:  # e.g. CULane precision with nothing detected (the official tool prints -1)
        return "undefined"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_markdown(path: Path, metrics: dict) -> None:
    lines = [f"# Lane detection evaluation ({metrics['mode']})", "",
             f"- bag: `{metrics['bag']}` ({metrics.get('storage', '?')}, topic `{metrics.get('image_topic', '?')}`)",
             f"- frames: {metrics['frames']}, ground truth: {'yes' if metrics.get('has_ground_truth') else 'no'}",
             f"- wall time: {metrics.get('wall_time_s', 0):.1f} s", ""]
    if metrics["mode"] == "live":
        lines += [f"- published {metrics.get('published', 0)}, answered {metrics.get('received', 0)}, "
                  f"dropped {metrics.get('dropped', 0)} (rate x{metrics.get('rate')})", ""]
    models = metrics.get("models", [])
    if models:
        header = ["", *[m["name"] for m in models]]
        rows = [("model", "model"), ("backend", "backend"), ("frames answered", "answered"), ("dropped", "dropped"),
                ("lanes per frame", "lanes_per_frame")]
        table = [header, ["---"] * len(header)]
        for label, key in rows:
            if any(m.get(key) not in (None, "") for m in models):  # e.g. live mode knows no backend
                table.append([label, *[_fmt(m.get(key, "")) for m in models]])
        if any("tusimple" in m for m in models):
            for key in ("accuracy", "fp", "fn"):
                table.append([f"TuSimple {key}", *[_fmt(m.get("tusimple", {}).get(key, "")) for m in models]])
            for key in ("precision", "recall", "f1"):
                table.append([f"CULane {key}", *[_fmt(m.get("culane", {}).get(key, "")) for m in models]])
        for key in ("median", "p90", "p99", "max"):
            table.append([f"{models[0]['latency_ms']['kind'].replace('_', '-')} latency {key} (ms)",
                          *[f"{m['latency_ms'][key]:.1f}" if key in m["latency_ms"] else "" for m in models]])
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in table] + [""]
        categories = sorted({c for m in models for c in m.get("culane", {}).get("categories", {})})
        if categories:
            table = [["CULane F1 by category", *[m["name"] for m in models]], ["---"] * (len(models) + 1)]
            for c in categories:
                table.append([c, *[_fmt(m["culane"].get("categories", {}).get(c, {}).get("f1", "")) for m in models]])
            lines += ["| " + " | ".join(map(str, r)) + " |" for r in table] + [""]
    lines += _existence_lines(models)
    if metrics.get("errors"):
        lines += ["## Problems", ""] + [f"- {e}" for e in metrics["errors"]] + [""]
    if metrics.get("notes"):
        lines += ["## Notes", ""] + [f"- {e}" for e in metrics["notes"]] + [""]
    files = metrics.get("files", {})
    accuracy_title = "Per-frame accuracy" if metrics.get("has_ground_truth") else "Lanes found per frame"
    for key, title in (("accuracy_plot", accuracy_title), ("latency_plot", "Latency"),
                       ("confusion_plot", "Slot confusion"), ("reliability_plot", "Lane existence reliability"),
                       ("ground_plot", "Ground-plane lanes (bird's-eye view)")):
        if key in files:
            lines += [f"## {title}", "", f"![{title}]({files[key]})", ""]
    if "video" in files:
        lines += [f"Overlay video ({files.get('video_frames', 0)} frames): [{files['video']}]({files['video']})", ""]
    write_text_atomic(path, "\n".join(lines))


def _existence_lines(models: list[dict]) -> list[str]:
    """Markdown: calibration figures of the existence output and its reliability bins, per model."""
    models = [m for m in models if "existence" in m]
    if not models:
        return []
    lines = ["## Lane existence calibration", "",
             "Each (frame, slot) is one prediction; positive when the ground truth has a lane in that slot. "
             "ECE / MCE: expected / maximum |fraction positive - mean probability| over 10 equal-width bins "
             "(Guo et al. 2017).", "",
             "| | " + " | ".join(m["name"] for m in models) + " |", "|---" * (len(models) + 1) + "|"]
    for key in ("samples", "positives", "ece", "mce", "brier", "nll"):
        lines.append(f"| {key} | " + " | ".join(_fmt(m["existence"][key]) for m in models) + " |")
    lines += ["", f"| bin ({models[0]['name']}) | slots | mean probability | fraction with a lane |",
              "|---|---|---|---|"]
    for b in models[0]["existence"]["bins"]:
        if b["count"]:
            lines.append(f"| {b['lower']:.1f}-{b['upper']:.1f} | {b['count']} | {b['mean_prob']:.3f} | "
                         f"{b['frac_present']:.3f} |")
    return lines + [""]


def write_report(out: Path, metrics: dict, runs: list[ModelRun], frames_factory: Callable[[], Any] | None,
                 video: str, worst: int, fps: float) -> dict:
    """metrics.json, report.md, plots and the overlay video into ``out``."""
    # Lazy: matplotlib is an optional dependency (setup.py extra "eval") and slow to import.
    import matplotlib

    matplotlib.use("Agg")
    files: dict[str, Any] = {}
    if runs and runs[0].results:
        plot_accuracy(runs, out / "accuracy.png")
        files["accuracy_plot"] = "accuracy.png"
        if any(r.latency_ms is not None for run in runs for r in run.results):
            plot_latency(runs, out / "latency.png")
            files["latency_plot"] = "latency.png"
        if any(r.tusimple for r in runs[0].results):
            plot_confusion(runs, out / "slot_confusion.png")
            files["confusion_plot"] = "slot_confusion.png"
        curves = {m["name"]: m["existence"] for m in metrics.get("models", []) if "existence" in m}
        if curves:
            plot_reliability(curves, out / "existence_reliability.png")
            files["reliability_plot"] = "existence_reliability.png"
        if plot_ground_lanes(runs, out / "ground_lanes.png"):
            files["ground_plot"] = "ground_lanes.png"
        if video != "none" and frames_factory is not None:
            name = "overlay_all.mp4" if video == "all" else "worst_frames.mp4"
            indices = select_frames(runs, video, worst)
            try:
                with frames_factory() as reader:
                    video_fps = fps if video == "all" else min(fps, 4.0)
                    n = write_video(out / name, runs, indices, reader.frames(), video_fps)
                if n:
                    files["video"], files["video_frames"] = name, n
            except Exception as exc:  # noqa: BLE001 - the scores are still worth writing
                metrics.setdefault("errors", []).append(f"overlay video not written: {type(exc).__name__}: {exc}")
    metrics["files"] = files
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2, default=_json_default))
    write_markdown(out / "report.md", metrics)
    return metrics


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
