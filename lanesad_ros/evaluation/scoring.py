"""Scoring a detector over a drive: per-frame results, TuSimple (accuracy, FP, FN) and CULane (F1) scorers
per model, latency statistics, slot confusion and the metrics dict of a report. ROS-free.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lanesad_ros.data.culane import read_culane_list
from lanesad_ros.data.tusimple import label_to_frame, load_label_dicts
from lanesad_ros.existence import reliability, slot_presence
from lanesad_ros.lanes import Lane
from lanesad_ros.metrics.culane import CULaneScorer
from lanesad_ros.metrics.tusimple import TuSimpleScorer

SLOT_ROWS = ["LEFT_LEFT", "LEFT", "RIGHT", "RIGHT_RIGHT", "UNKNOWN", "NONE"]


SLOT_COLS = ["LEFT_LEFT", "LEFT", "RIGHT", "RIGHT_RIGHT", "UNKNOWN", "MISSED"]


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
    exist_prob: np.ndarray | None = None  # (L,) every slot's existence probability, when the detector gives it
    slot_present: np.ndarray | None = None  # (L,) bool: the ground truth has a lane in that slot
    bag_time_ns: int | None = None  # when the frame was recorded (its stamp may be 0 or repeated)
    labels: str | None = None  # the official metric its ground truth is for: tusimple (h_samples) | culane

    @property
    def time_ns(self) -> int:
        """The frame's time for time axes and rates: its bag time, else its header stamp."""
        return self.stamp_ns if self.bag_time_ns is None else self.bag_time_ns


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
            inference_ms: float | None = None, exist_prob: np.ndarray | None = None,
            bag_time_ns: int | None = None) -> FrameResult:
        res = FrameResult(index, stamp_ns, lanes, latency_ms, inference_ms, exist_prob=exist_prob,
                          bag_time_ns=bag_time_ns)
        if gt is not None and exist_prob is not None:
            res.slot_present = slot_presence(gt.slots, len(exist_prob))
        if gt is not None:
            res.labels = "culane" if getattr(gt, "h_samples", None) is None else "tusimple"
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
        existence = self.existence()
        if existence is not None:
            out["existence"] = existence
        return out

    def existence(self, bins: int = 10) -> dict | None:
        """Reliability of the existence output over the labelled frames (``lanesad_ros.existence.reliability``):
        each (frame, slot) pair is one prediction, positive when the ground truth has a lane in that slot.
        None without per-slot probabilities (live mode: a LaneArray carries only the reported lanes)."""
        scored = [r for r in self.results if r.exist_prob is not None and r.slot_present is not None]
        if not scored:
            return None
        return reliability(np.concatenate([r.exist_prob for r in scored]),
                           np.concatenate([r.slot_present for r in scored]), bins)


def latency_stats(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    v = np.asarray(values, dtype=np.float64)
    return {"count": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)),
            "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
            "min": float(v.min()), "max": float(v.max())}


def load_labels(path: str | Path, root: str | Path | None = None) -> list:
    """A TuSimple label file (.json lines) or a CULane list file (.txt) -> LabelledFrames, in order."""
    path = Path(path)
    if path.suffix == ".txt":
        return read_culane_list(path, root=root)
    return [label_to_frame(d, None, f"{path}:{i + 1}") for i, d in enumerate(load_label_dicts(path))]


def slot_confusion(run: ModelRun) -> np.ndarray:
    """Counts of (ground-truth slot, matched predicted slot) over the run; rows SLOT_ROWS, cols SLOT_COLS."""
    m = np.zeros((len(SLOT_ROWS), len(SLOT_COLS)), dtype=np.int64)
    for r in run.results:
        for gt_slot, pred_slot in (r.tusimple or {}).get("slot_pairs", []):
            m[SLOT_ROWS.index(gt_slot), SLOT_COLS.index(pred_slot)] += 1
    return m


def build_metrics(mode: str, args: argparse.Namespace, runs: list[ModelRun], context: dict,
                  problems: list[str]) -> dict:
    has_gt = bool(context.get("has_ground_truth"))
    models = [run.summary(has_gt) for run in runs]
    metrics: dict[str, Any] = {"mode": mode, "bag": str(args.bag), **context,
                               "frames": models[0]["frames"] if models else 0}
    if models:
        first = models[0]
        for key in ("tusimple", "culane", "latency_ms", "inference_ms", "dropped", "tusimple_dropped_as_empty",
                    "existence"):
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
    metrics["notes"] = list(metrics.get("notes", [])) + [
        f"CULane {why} for {m['name']}: reported as undefined" for m in models for why in
        m.get("culane", {}).get("undefined", [])]
    metrics["errors"] = list(problems) + [e for run in runs for e in run.errors]
    return metrics
