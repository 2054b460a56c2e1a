"""Score a lane detector on a recorded drive (rosbag2), offline or live through ROS.

``lanesad-eval offline BAG``: reads the bag and runs the Detector directly (fast,
deterministic). ``lanesad-eval live BAG [--spawn]``: plays the bag over ROS into the running
node (or one it starts), records ``/lanes``, and measures end-to-end latency and drops.
Both write a report folder: metrics.json, report.md, plots (per-frame accuracy, latency
histogram, slot confusion) and an overlay video of the worst (or all) frames.

A damaged bag is scored as far as it can be read; the problems are listed in the report
and the exit status is 1. Nothing readable at all: exit status 2, report with the error.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from lanesad_ros.lanes import Lane
from lanesad_ros.fileio import write_text_atomic
from lanesad_ros.metrics.culane import CULaneScorer
from lanesad_ros.metrics.tusimple import TuSimpleScorer

SLOT_ROWS = ["LEFT_LEFT", "LEFT", "RIGHT", "RIGHT_RIGHT", "UNKNOWN", "NONE"]
SLOT_COLS = ["LEFT_LEFT", "LEFT", "RIGHT", "RIGHT_RIGHT", "UNKNOWN", "MISSED"]
GT_COLOUR = (255, 255, 255)


@dataclass
class FrameResult:
    """One frame's outcome for one model. ``lanes`` None: no answer (dropped in live mode)."""

    index: int
    stamp_ns: int
    lanes: list[Lane] | None
    latency_ms: float | None
    inference_ms: float | None = None
    tusimple: dict | None = None
    culane: dict | None = None


@dataclass
class ModelRun:
    """Scores and per-frame results of one weights file over the bag."""

    name: str
    latency_kind: str  # "inference" (offline) or "end_to_end" (live)
    info: dict = field(default_factory=dict)
    results: list[FrameResult] = field(default_factory=list)
    tusimple: TuSimpleScorer = field(default_factory=TuSimpleScorer)
    tusimple_all: TuSimpleScorer = field(default_factory=TuSimpleScorer)  # dropped frames as "no lanes"
    culane: CULaneScorer = field(default_factory=CULaneScorer)
    errors: list[str] = field(default_factory=list)

    def add(self, index: int, stamp_ns: int, gt: Any, lanes: list[Lane] | None, latency_ms: float | None,
            inference_ms: float | None = None) -> FrameResult:
        res = FrameResult(index, stamp_ns, lanes, latency_ms, inference_ms)
        if gt is not None:
            try:
                self.tusimple_all.add(lanes or [], gt, frame_id=index)
                if lanes is not None:
                    res.tusimple = self.tusimple.add(lanes, gt, frame_id=index)
                    category = getattr(gt, "meta", {}).get("category")
                    res.culane = self.culane.add(lanes, gt, category=category, frame_id=index)
            except ValueError as exc:
                self.errors.append(f"frame {index}: cannot score ({exc})")
        self.results.append(res)
        return res

    def summary(self, has_gt: bool) -> dict:
        lat = [r.latency_ms for r in self.results if r.latency_ms is not None]
        inf = [r.inference_ms for r in self.results if r.inference_ms is not None]
        answered = sum(r.lanes is not None for r in self.results)
        out = {"name": self.name, **self.info, "frames": len(self.results), "answered": answered,
               "dropped": len(self.results) - answered,
               "lanes_per_frame": float(np.mean([len(r.lanes) for r in self.results if r.lanes is not None]))
               if answered else 0.0,
               "latency_ms": {"kind": self.latency_kind, **latency_stats(lat)}}
        if inf:
            out["inference_ms"] = latency_stats(inf)
        if has_gt and self.tusimple.records:
            out["tusimple"] = self.tusimple.result()
            out["culane"] = self.culane.result()
            if out["dropped"]:
                out["tusimple_dropped_as_empty"] = self.tusimple_all.result()
        return out


def latency_stats(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    v = np.asarray(values, dtype=np.float64)
    return {"count": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)),
            "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
            "min": float(v.min()), "max": float(v.max())}


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=desc, unit="frame", file=sys.stderr, disable=None)


# --- ground truth -------------------------------------------------------------------------

def load_labels(path: str | Path, root: str | Path | None = None) -> list:
    """A TuSimple label file (.json lines) or a CULane list file (.txt) -> LabelledFrames, in order."""
    from lanesad_ros.data.culane import read_culane_list
    from lanesad_ros.data.tusimple import label_to_frame, load_label_dicts

    path = Path(path)
    if path.suffix == ".txt":
        return read_culane_list(path, root=root)
    return [label_to_frame(d, None, f"{path}:{i + 1}") for i, d in enumerate(load_label_dicts(path))]


def _open_reader(args: argparse.Namespace, labels: list | None):
    from lanesad_ros.ros.bag import BagReader

    return BagReader(args.bag, image_topic=args.image_topic, gt_topic=args.gt_topic, labels=labels)


# --- offline ------------------------------------------------------------------------------

def run_offline(args: argparse.Namespace, labels: list | None, problems: list[str]) -> tuple[list[ModelRun], dict]:
    from lanesad_ros.detector import Detector

    reader = _open_reader(args, labels)  # a bad bag is reported before minutes go into loading models
    weights = args.compare or [args.weights]
    detectors, runs = [], []
    for w in weights:
        try:
            det = Detector.from_weights(w, device=args.device, backend=args.backend)
        except BaseException:
            reader.close()
            raise
        detectors.append(det)
        name = det.weights_name
        if any(r.name == name for r in runs):
            name = f"{name} ({len(runs) + 1})"
        runs.append(ModelRun(name, "inference", info={"weights": str(det.weights_path), "model": det.model_name,
                                                       "backend": det.backend_name, "device": str(det.device)}))
    started = time.perf_counter()
    with reader, _progress(len(reader), "offline") as bar:
        for index, frame in enumerate(reader.frames()):
            if args.max_frames and index >= args.max_frames:
                break
            for det, run in zip(detectors, runs):
                try:
                    found = det.detect(frame.image)
                except ValueError as exc:  # DetectorError: a bad image, keep going
                    run.errors.append(f"frame {index}: {exc}")
                    run.add(index, frame.stamp_ns, frame.ground_truth, None, None)
                    continue
                run.add(index, frame.stamp_ns, frame.ground_truth, found.lanes, found.latency_ms)
            bar.update(1)
        problems.extend(reader.problems)
        context = {"notes": reader.notes, "image_topic": reader.image_topic, "image_type": reader.image_type,
                   "storage": reader.storage, "has_ground_truth": reader.has_ground_truth,
                   "wall_time_s": time.perf_counter() - started}
    return runs, context


# --- live -----------------------------------------------------------------------------------

def node_topics(bag_topic: str, compressed: bool) -> tuple[str, str]:
    """(node's image_topic parameter, topic to publish on) for a bag image topic.

    The node subscribes to ``<image_topic>/compressed`` for compressed input (image_transport's
    convention), so a compressed bag topic is published there whatever it was called.
    """
    if not compressed:
        return bag_topic, bag_topic
    base = bag_topic[: -len("/compressed")] if bag_topic.endswith("/compressed") else bag_topic
    return base, base.rstrip("/") + "/compressed"


def spawn_node(image_topic: str, compressed: bool, weights: str | None, params: list[str], log_path: Path):
    """Start the lane detector as its own process (same interpreter, so no PATH issues)."""
    cmd = [sys.executable, "-m", "lanesad_ros.ros.node", "--ros-args", "-p", f"image_topic:={image_topic}"]
    if compressed:
        cmd += ["-p", "input_compressed:=true"]
    if weights:
        cmd += ["-p", f"weights:={Path(weights).resolve()}"]
    for p in params:
        cmd += ["-p", p]
    env = dict(os.environ)
    env.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    env.setdefault("PYTHONUNBUFFERED", "1")
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    proc.log_file = log  # closed in stop_node
    return proc


def stop_node(proc) -> int | None:
    """SIGINT (clean rclpy shutdown), then terminate, then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    proc.log_file.close()
    return proc.returncode


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_live(args: argparse.Namespace, labels: list | None, problems: list[str]) -> tuple[list[ModelRun], dict]:
    from lanesad_ros.ros.bag import COMPRESSED_TYPE
    from lanesad_ros.ros.convert import lane_array_to_detections
    from lanesad_ros.ros.replay import ReplayError, Replayer

    reader = _open_reader(args, labels)
    with reader:
        image_topic, image_type, storage = reader.image_topic, reader.image_type, reader.storage
        total = len(reader)
    compressed = image_type == COMPRESSED_TYPE
    node_topic, publish_topic = node_topics(image_topic, compressed)
    proc = None
    node_log = Path(args.out) / "node.log"
    started = time.perf_counter()
    try:
        if args.spawn:
            proc = spawn_node(node_topic, compressed, args.weights, args.node_param, node_log)
        with Replayer(publish_topic, image_type, args.lanes_topic) as rep:
            try:
                rep.wait_for_detector(args.startup_timeout, alive=lambda: proc is None or proc.poll() is None)
            except ReplayError as exc:
                tail = _log_tail(node_log) if proc is not None else ""
                raise ReplayError(f"{exc}" + (f"\nnode log ({node_log}):\n{tail}" if tail else "")) from None
            reader = _open_reader(args, labels)
            with reader, _progress(total, "live") as bar:
                frames = reader.serialized_images()
                if args.max_frames:
                    frames = (f for i, f in zip(range(args.max_frames), frames))
                result = rep.play(frames, rate=args.rate, settle_s=args.settle, progress=bar)
                problems.extend(reader.problems)
    finally:
        if proc is not None:
            code = stop_node(proc)
            if code not in (0, -signal.SIGINT, 130, None):
                problems.append(f"lane detector process exited with status {code} (log: {node_log})")
    if result.duplicate_stamps:
        problems.append(f"{result.duplicate_stamps} images share a header stamp with an earlier one: "
                        "their answers cannot be told apart")
    run = ModelRun(Path(args.weights).name if args.weights else "node", "end_to_end",
                   info={"weights": str(args.weights) if args.weights else "(the node's)", "spawned": bool(args.spawn)})
    # Second pass: ground truth and scoring, matched by header stamp.
    reader = _open_reader(args, labels)
    with reader:
        for index, frame in enumerate(reader.frames()):
            if args.max_frames and index >= args.max_frames:
                break
            answer = result.received.get(frame.stamp_ns)
            lanes = inference = None
            if answer is not None:
                det = lane_array_to_detections(answer[1])
                lanes, inference = det.lanes, det.latency_ms
                run.info.setdefault("model", det.model_name)
                run.info.setdefault("weights_name", det.weights_name)
            run.add(index, frame.stamp_ns, frame.ground_truth, lanes, result.latency_ms(frame.stamp_ns), inference)
        has_gt = reader.has_ground_truth
        notes = reader.notes
    if not args.weights and run.info.get("weights_name"):
        run.name = run.info["weights_name"]  # the node's own (default) weights, as it reports them
    context = {"notes": notes, "image_topic": image_topic, "image_type": image_type, "storage": storage,
               "has_ground_truth": has_gt, "published_on": publish_topic, "lanes_topic": args.lanes_topic,
               "rate": args.rate, "published": len(result.published), "received": len(result.received),
               "unmatched_answers": result.unmatched,
               "replay_s": result.duration_s, "wall_time_s": time.perf_counter() - started}
    return [run], context


# --- report ---------------------------------------------------------------------------------

def slot_confusion(run: ModelRun) -> np.ndarray:
    """Counts of (ground-truth slot, matched predicted slot) over the run; rows SLOT_ROWS, cols SLOT_COLS."""
    m = np.zeros((len(SLOT_ROWS), len(SLOT_COLS)), dtype=np.int64)
    for r in run.results:
        for gt_slot, pred_slot in (r.tusimple or {}).get("slot_pairs", []):
            m[SLOT_ROWS.index(gt_slot), SLOT_COLS.index(pred_slot)] += 1
    return m


def plot_accuracy(runs: list[ModelRun], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    t0 = runs[0].results[0].stamp_ns if runs[0].results else 0
    for run in runs:
        scored = [r for r in run.results if r.tusimple is not None]
        if scored:
            ax.plot([(r.stamp_ns - t0) / 1e9 for r in scored], [r.tusimple["accuracy"] for r in scored],
                    ".-", lw=1, label=f"{run.name} accuracy")
        else:
            answered = [r for r in run.results if r.lanes is not None]
            ax.plot([(r.stamp_ns - t0) / 1e9 for r in answered], [len(r.lanes) for r in answered],
                    ".-", lw=1, label=f"{run.name} lanes found")
        dropped = [r for r in run.results if r.lanes is None]
        if dropped:
            ax.plot([(r.stamp_ns - t0) / 1e9 for r in dropped], [0] * len(dropped), "rx", label=f"{run.name} dropped")
    ax.set_xlabel("time in bag (s)")
    ax.set_ylabel("TuSimple accuracy" if any(r.tusimple for r in runs[0].results) else "lanes")
    ax.set_title("per-frame accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(runs: list[ModelRun], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for run in runs:
        lat = [r.latency_ms for r in run.results if r.latency_ms is not None]
        if lat:
            ax.hist(lat, bins=30, alpha=0.6, label=f"{run.name} (median {np.median(lat):.1f} ms)")
    kind = runs[0].latency_kind.replace("_", "-")
    ax.set_xlabel(f"{kind} latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title("image published -> LaneArray received" if runs[0].latency_kind == "end_to_end"
                 else "detector latency (preprocess + network + postprocess)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(runs: list[ModelRun], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.5), squeeze=False)
    for ax, run in zip(axes[0], runs):
        m = slot_confusion(run)
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(SLOT_COLS)), SLOT_COLS, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(SLOT_ROWS)), SLOT_ROWS, fontsize=8)
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", color="black" if v < m.max() / 2 else "white")
        ax.set_xlabel("predicted slot")
        ax.set_ylabel("ground-truth slot")
        ax.set_title(f"slot confusion: {run.name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    import cv2

    from lanesad_ros.overlay import draw_lanes

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
    import cv2

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
    if metrics.get("errors"):
        lines += ["## Problems", ""] + [f"- {e}" for e in metrics["errors"]] + [""]
    if metrics.get("notes"):
        lines += ["## Notes", ""] + [f"- {e}" for e in metrics["notes"]] + [""]
    files = metrics.get("files", {})
    for key, title in (("accuracy_plot", "Per-frame accuracy"), ("latency_plot", "Latency"),
                       ("confusion_plot", "Slot confusion")):
        if key in files:
            lines += [f"## {title}", "", f"![{title}]({files[key]})", ""]
    if "video" in files:
        lines += [f"Overlay video ({files.get('video_frames', 0)} frames): [{files['video']}]({files['video']})", ""]
    write_text_atomic(path, "\n".join(lines))


def write_report(out: Path, metrics: dict, runs: list[ModelRun], frames_factory: Callable[[], Any] | None,
                 video: str, worst: int, fps: float) -> dict:
    """metrics.json, report.md, plots and the overlay video into ``out``."""
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
        if video != "none" and frames_factory is not None:
            name = "overlay_all.mp4" if video == "all" else "worst_frames.mp4"
            indices = select_frames(runs, video, worst)
            try:
                with frames_factory() as reader:
                    n = write_video(out / name, runs, indices, reader.frames(), fps if video == "all" else min(fps, 4.0))
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


def build_metrics(mode: str, args: argparse.Namespace, runs: list[ModelRun], context: dict,
                  problems: list[str]) -> dict:
    has_gt = bool(context.get("has_ground_truth"))
    models = [run.summary(has_gt) for run in runs]
    metrics: dict[str, Any] = {"mode": mode, "bag": str(args.bag), **context,
                               "frames": models[0]["frames"] if models else 0}
    if models:
        first = models[0]
        for key in ("tusimple", "culane", "latency_ms", "inference_ms", "dropped", "tusimple_dropped_as_empty"):
            if key in first:
                metrics[key] = first[key]
        metrics["models"] = models
        if len(models) > 1:
            metrics["compare"] = {m["name"]: {k: m.get(k) for k in ("tusimple", "culane", "latency_ms")}
                                  for m in models}
        metrics["per_frame"] = [
            {"index": r.index, "stamp_ns": r.stamp_ns,
             **{run.name: {"lanes": None if r2.lanes is None else len(r2.lanes),
                           "latency_ms": r2.latency_ms,
                           "accuracy": r2.tusimple["accuracy"] if r2.tusimple else None,
                           "fp": r2.tusimple["fp"] if r2.tusimple else None,
                           "fn": r2.tusimple["fn"] if r2.tusimple else None}
                for run, r2 in ((run, run.results[i]) for run in runs)}}
            for i, r in enumerate(runs[0].results)]
    metrics["errors"] = list(problems) + [e for run in runs for e in run.errors]
    return metrics


# --- CLI --------------------------------------------------------------------------------------

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
    from lanesad_ros.data.frames import DataError
    from lanesad_ros.ros.bag import BagError

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
    factory = (lambda: _open_reader(args, labels)) if runs else None
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


if __name__ == "__main__":
    sys.exit(main())
