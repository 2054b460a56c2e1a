"""TuSimple lane metrics, exactly as the benchmark's official evaluate/lane.py computes them.

Per image: every ground-truth lane gets a threshold of 20 px / cos(theta), theta from a
least-squares line x = k*y + b through its labelled points (fitted as the official code's
scikit-learn LinearRegression fits it, see lane_angle); a prediction's line accuracy
against it is the fraction of h_samples where |x_pred - x_gt| < threshold (missing points
on either side count as -100, so two missing points agree). Each ground-truth lane takes
its best prediction (not a one-to-one assignment): >= 0.85 matched, else a false negative;
FP = #pred - #matched. With more than 4 ground-truth lanes the worst accuracy is dropped
and one FN forgiven. Images over 200 ms or with more than #gt + 2 predictions score
(0, 0, 1). The benchmark then averages the three numbers over images.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg

from lanesad_ros.lanes import TUSIMPLE_H_SAMPLES, Lane, LaneSlot

PIXEL_THRESH = 20.0
PT_THRESH = 0.85
MAX_RUNTIME_MS = 200.0
MISSING = -100.0
# TuSimple's standard rows (the shared labels and the synthetic generator use these).
DEFAULT_H_SAMPLES = TUSIMPLE_H_SAMPLES.astype(np.float64)


def lane_angle(xs: np.ndarray, h_samples: np.ndarray) -> float:
    """Angle (rad) of the least-squares line x = k*y + b through the lane's labelled points (x >= 0).

    As the official ``LaneEval.get_angle``: ``LinearRegression().fit(ys[:, None], xs).coef_[0]``, i.e.
    scikit-learn centres both variables (``np.average``) and solves the one-column problem with
    ``scipy.linalg.lstsq`` (LAPACK gelsd). Done the same way here, so the slope carries the same last
    bits; they decide frames whose threshold 20 / cos(theta) is an exact integer (h_samples [160, 180],
    gt [100, 121]: k = 1.05 gives 29 px, gelsd's 1.0499999999999998 keeps 29 px off outside it).
    0 with fewer than 2 labelled points.
    """
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(h_samples, dtype=np.float64)
    valid = xs >= 0
    if valid.sum() < 2:
        return 0.0
    y = ys[valid][:, None]
    x = xs[valid]
    y_centred = y - np.average(y, axis=0)
    x_centred = x - np.average(x, axis=0)
    coef = scipy.linalg.lstsq(y_centred, x_centred, cond=max(y_centred.shape) * np.finfo(np.float64).eps)[0]
    return float(np.arctan(coef[0]))


def line_accuracy(pred_xs: np.ndarray, gt_xs: np.ndarray, thresh: float) -> float:
    """Fraction of rows where prediction and ground truth agree within ``thresh`` pixels."""
    pred = np.where(np.asarray(pred_xs, dtype=np.float64) >= 0, pred_xs, MISSING)
    gt = np.where(np.asarray(gt_xs, dtype=np.float64) >= 0, gt_xs, MISSING)
    return float(np.sum(np.abs(pred - gt) < thresh)) / len(gt)


@dataclass
class FrameMatch:
    """The official per-image numbers plus who matched whom (for reports and confusion plots)."""

    accuracy: float
    fp: float
    fn: float
    best_pred: list[int] = field(default_factory=list)  # per gt lane: index of its best prediction, -1 if none
    best_acc: list[float] = field(default_factory=list)  # per gt lane: that prediction's line accuracy
    matched: list[bool] = field(default_factory=list)  # per gt lane: best_acc >= 0.85
    rejected: bool = False  # runtime or prediction-count rule fired


def match_frame(pred_xs: Sequence[np.ndarray], gt_xs: Sequence[np.ndarray], h_samples: Sequence[float],
                runtime_ms: float = 0.0) -> FrameMatch:
    """Score one image as the official bench() does, keeping the matching details."""
    h = np.asarray(h_samples, dtype=np.float64)
    preds = [np.asarray(p, dtype=np.float64) for p in pred_xs]
    gts = [np.asarray(g, dtype=np.float64) for g in gt_xs]
    for i, p in enumerate(preds):
        if p.shape != h.shape:
            raise ValueError(f"prediction lane {i} has {p.size} x values, expected one per h_sample ({h.size})")
    for i, g in enumerate(gts):
        if g.shape != h.shape:
            raise ValueError(f"ground-truth lane {i} has {g.size} x values, expected one per h_sample ({h.size})")
    if runtime_ms > MAX_RUNTIME_MS or len(gts) + 2 < len(preds):
        return FrameMatch(0.0, 0.0, 1.0, [-1] * len(gts), [0.0] * len(gts), [False] * len(gts), rejected=True)
    best_pred, best_acc, matched = [], [], []
    fn = 0.0
    for g in gts:
        thresh = PIXEL_THRESH / np.cos(lane_angle(g, h))
        accs = [line_accuracy(p, g, thresh) for p in preds]
        idx = int(np.argmax(accs)) if accs else -1
        acc = accs[idx] if accs else 0.0
        ok = acc >= PT_THRESH
        fn += 0.0 if ok else 1.0
        best_pred.append(idx)
        best_acc.append(acc)
        matched.append(ok)
    fp = len(preds) - float(sum(matched))
    if len(gts) > 4 and fn > 0:
        fn -= 1
    total = sum(best_acc)
    if len(gts) > 4:
        total -= min(best_acc)
    accuracy = total / max(min(4.0, len(gts)), 1.0)
    fp_rate = fp / len(preds) if preds else 0.0
    fn_rate = fn / max(min(float(len(gts)), 4.0), 1.0)
    return FrameMatch(accuracy, fp_rate, fn_rate, best_pred, best_acc, matched)


def frame_scores(pred_xs: Sequence[np.ndarray], gt_xs: Sequence[np.ndarray], h_samples: Sequence[float],
                 runtime_ms: float = 0.0) -> tuple[float, float, float]:
    """(accuracy, fp, fn) of one image, the official lane.py bench()."""
    m = match_frame(pred_xs, gt_xs, h_samples, runtime_ms)
    return m.accuracy, m.fp, m.fn


def infer_h_samples(rows: Iterable[float]) -> np.ndarray:
    """h_samples from the rows ground-truth points lie on: a regular grid min..max when they fit one
    (so rows no lane reaches still count, as in a TuSimple label), else the rows themselves."""
    rows = np.unique(np.round(np.asarray(list(rows), dtype=np.float64), 3))
    if len(rows) < 2:
        return rows
    step = float(np.min(np.diff(rows)))
    offsets = (rows - rows[0]) / step
    if np.all(np.abs(offsets - np.round(offsets)) < 1e-3):
        return np.arange(rows[0], rows[-1] + step / 2, step)
    return rows


def _slot_name(slot: Any) -> str:
    try:
        return LaneSlot(int(slot)).name
    except (ValueError, TypeError):
        return LaneSlot.UNKNOWN.name


def points_to_xs(points: np.ndarray, h_samples: np.ndarray) -> np.ndarray:
    """(N, 2) x,y points -> x per h_sample (-2 where the lane has no point).

    Labels that sit exactly on the h_samples (TuSimple, synthetic) map one to one, so gaps
    stay gaps; other polylines are interpolated within their vertical extent.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[pts[:, 0] >= 0]
    h = np.asarray(h_samples, dtype=np.float64)
    out = np.full(h.shape, -2.0)
    if len(pts) == 0:
        return out
    row_idx = np.searchsorted(h, pts[:, 1])
    row_idx = np.clip(row_idx, 0, len(h) - 1)
    on_grid = np.abs(h[row_idx] - pts[:, 1]) < 1e-3
    if on_grid.all():
        out[row_idx] = pts[:, 0]
        return out
    return Lane(LaneSlot.UNKNOWN, 1.0, pts).x_at_rows(h).astype(np.float64)


def _lanes_as_xs(lanes: Any, h_samples: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """Lane objects, (N,2) point arrays or ready x arrays -> (x arrays, slot names)."""
    lanes = getattr(lanes, "lanes", lanes)  # LaneDetections
    xs, slots = [], []
    for lane in lanes:
        if isinstance(lane, Lane):
            xs.append(lane.x_at_rows(h_samples).astype(np.float64))
            slots.append(_slot_name(lane.slot))
            continue
        arr = np.asarray(lane, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[1] == 2:
            xs.append(points_to_xs(arr, h_samples))
        elif arr.ndim == 1:
            xs.append(arr)
        else:
            raise ValueError(f"a lane must be a Lane, an (N, 2) point array or an x array, got shape {arr.shape}")
        slots.append(LaneSlot.UNKNOWN.name)
    return xs, slots


def ground_truth_xs(gt: Any, h_samples: Sequence[float] | None = None
                    ) -> tuple[list[np.ndarray], list[str], np.ndarray]:
    """Ground truth in any of our forms -> (x arrays, slot names, h_samples).

    Accepts a LabelledFrame (lanes as (N,2) points, h_samples, slots; lanes the loader
    dropped for having no point, ``meta["empty_lanes"]``, come back as all -2), a TuSimple label
    dict ({"lanes": [[x...]], "h_samples": [...]}), or a list of Lane / point arrays / x
    arrays (with ``h_samples`` given; else inferred from the ground-truth rows, or
    DEFAULT_H_SAMPLES for ready x arrays).
    """
    if isinstance(gt, dict):
        if "lanes" not in gt or "h_samples" not in gt:
            raise ValueError("TuSimple label dict needs 'lanes' and 'h_samples'")
        h = np.asarray(gt["h_samples"], dtype=np.float64)
        xs = [np.asarray(l, dtype=np.float64) for l in gt["lanes"]]
        return xs, [LaneSlot.UNKNOWN.name] * len(xs), h
    frame_h = getattr(gt, "h_samples", None)
    lanes = gt.lanes if hasattr(gt, "lanes") else gt
    if h_samples is not None:
        h = np.asarray(h_samples, dtype=np.float64)
    elif frame_h is not None:
        h = np.asarray(frame_h, dtype=np.float64)
    else:  # e.g. CULane lines: sample at the rows the labels use
        rows = [y for lane in lanes if not isinstance(lane, Lane) and np.ndim(lane) == 2
                for y in np.asarray(lane, dtype=np.float64)[:, 1]]
        rows += [y for lane in lanes if isinstance(lane, Lane) for y in lane.image_points[:, 1]]
        h = infer_h_samples(rows)
        if len(h) < 2:
            h = DEFAULT_H_SAMPLES
    xs, slots = _lanes_as_xs(lanes, h)
    frame_slots = getattr(gt, "slots", None)
    if frame_slots is not None and len(frame_slots) == len(xs):
        slots = [_slot_name(s) for s in frame_slots]
    # TuSimple lanes labelled without a single point still count in the official bench().
    empty = int(getattr(gt, "meta", {}).get("empty_lanes", 0) or 0)
    xs += [np.full(h.shape, -2.0)] * empty
    slots += [LaneSlot.UNKNOWN.name] * empty
    return xs, slots, h


def mean_scores(records: Sequence[dict]) -> dict:
    """Mean accuracy / FP / FN of per-image records (``TuSimpleScorer.records``), as the benchmark
    averages over images; zeros for no records."""
    n = len(records)
    if n == 0:
        return {"accuracy": 0.0, "fp": 0.0, "fn": 0.0, "frames": 0}
    return {key: sum(r[key] for r in records) / n for key in ("accuracy", "fp", "fn")} | {"frames": n}


class TuSimpleScorer:
    """Accumulates official TuSimple scores over images; keeps per-frame records for reports."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def add(self, pred_lanes: Any, gt: Any, h_samples: Sequence[float] | None = None,
            runtime_ms: float = 0.0, frame_id: Any = None) -> dict:
        """Score one image. ``pred_lanes``: list[Lane], LaneDetections, or x arrays per h_sample.

        Returns the frame's record: accuracy, fp, fn, counts, and slot pairs
        (gt slot, matched prediction's slot or "MISSED"; unmatched predictions as ("NONE", slot)).
        """
        gt_xs, gt_slots, h = ground_truth_xs(gt, h_samples)
        pred_xs, pred_slots = _lanes_as_xs(pred_lanes, h)
        m = match_frame(pred_xs, gt_xs, h, runtime_ms)
        pairs = []
        used = set()
        for gi, (pi, ok) in enumerate(zip(m.best_pred, m.matched, strict=True)):
            if ok:
                pairs.append((gt_slots[gi], pred_slots[pi]))
                used.add(pi)
            else:
                pairs.append((gt_slots[gi], "MISSED"))
        pairs += [("NONE", pred_slots[pi]) for pi in range(len(pred_xs)) if pi not in used]
        record = {
            "frame": len(self.records) if frame_id is None else frame_id,
            "accuracy": m.accuracy,
            "fp": m.fp,
            "fn": m.fn,
            "num_pred": len(pred_xs),
            "num_gt": len(gt_xs),
            "line_accuracy": [round(a, 4) for a in m.best_acc],
            "rejected": m.rejected,
            "slot_pairs": pairs,
        }
        self.records.append(record)
        return record

    def result(self) -> dict:
        """Mean accuracy / FP / FN over the images added so far (as the benchmark averages)."""
        return mean_scores(self.records)
