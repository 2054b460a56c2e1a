"""CULane lane metrics, as the official CULane evaluator (``evaluate`` of the CULane release) counts them.

Official tool: ``lane_compare.cpp`` (IoU of two lanes), ``spline.cpp`` (``Spline::splineInterpTimes``),
``hungarianGraph.hpp`` (Kuhn-Munkres matching), ``counter.cpp`` (TP/FP/FN), run as
``evaluate -w 30 -t 0.5 -c 1640 -r 590``. Per image:

- every lane (prediction and ground truth, points as single-precision ``Point2f`` in the order given)
  with more than 2 points is replaced by a natural cubic spline through its points, parameterised by chord
  length and sampled 50 times per segment (plus the last point); a lane of exactly 2 points stays a line;
- the samples are rounded to integer pixels (``cvRound``: half to even) and drawn as ``cv::line`` segments
  30 px wide on a 1640x590 canvas; OpenCV clips what lies outside, so points with negative or
  out-of-image x still draw the part of the lane inside the image;
- IoU = |A & B| / |A | B| of every (ground truth, prediction) pair; a lane with fewer than 2 points
  has IoU 0 with everything but still counts as a lane;
- the official Kuhn-Munkres pairs them (maximum total IoU, with its 1e-2 tolerance on tight edges), and a
  pair is a true positive when its IoU > 0.5 (the threshold is applied after matching);
- FP = #predictions - TP, FN = #ground truth - TP; an image without ground truth has FP = #predictions,
  one without predictions FN = #ground truth.

Over a set: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R). Where the official
tool prints -1 (nothing to count: no detection, or no ground truth) or nan / a meaningless F (P + R = 0 or a
-1 inside), this module reports ``None`` (undefined) with the reason in ``undefined``.

Lanes given for another image size are scaled to the canvas as the official ``LaneCompare::resize_lane``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from lanesad_ros.lanes import Lane

CULANE_SIZE = (1640, 590)  # (width, height) of the official canvas
LINE_WIDTH = 30
IOU_THRESH = 0.5
SPLINE_SAMPLES = 50  # samples per spline segment, splineInterpTimes(lane, 50)
KM_TOLERANCE = 1e-2  # hungarianGraph.hpp: an edge is "tight" when |lw + rw - w| < 1e-2
_INT_MIN = np.iinfo(np.int32).min


def lane_points(lane: Any) -> np.ndarray:
    """A Lane or an (N, 2) x,y array -> float32 (N, 2), the official ``Point2f``, order kept, nothing dropped."""
    pts = lane.image_points if isinstance(lane, Lane) else lane
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2).astype(np.float32)


def spline_interp_times(points: np.ndarray, times: int = SPLINE_SAMPLES) -> np.ndarray:
    """The official ``Spline::splineInterpTimes`` of a lane with more than 2 points.

    points: (N, 2) float32 x,y, N > 2. Natural cubic spline in x(t), y(t), t the chord length along each
    segment, solved by the tridiagonal (Thomas) algorithm as ``Spline::cal_fun`` does, sampled at
    t = k * h / times, k = 0..times-1 on every segment, then the last point. Returns float32
    ((N - 1) * times + 1, 2). Repeated consecutive points give non-finite samples, as in the official tool.
    """
    p = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    n = len(p)
    if n <= 2:
        raise ValueError(f"a spline needs more than 2 points, got {n}")
    diff32 = p[1:] - p[:-1]  # float - float in the official code: single precision
    diff = diff32.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.sqrt(diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1])
        slope = diff / h[:, None]
        rhs = 6 * (slope[1:] - slope[:-1])  # (n-2, 2)
        # Thomas algorithm element by element (IEEE double, the official order of operations).
        a_sub = h[:-1]
        diag = 2 * (h[:-1] + h[1:])
        sup = h[1:].copy()
        rhs = rhs.copy()
        sup[0] = sup[0] / diag[0]
        rhs[0] = rhs[0] / diag[0]
        for i in range(1, n - 2):
            tmp = diag[i] - a_sub[i] * sup[i - 1]
            sup[i] = sup[i] / tmp
            rhs[i] = (rhs[i] - a_sub[i] * rhs[i - 1]) / tmp
        m = np.zeros((n, 2))
        m[n - 2] = rhs[n - 3]
        for i in range(n - 4, -1, -1):
            m[i + 1] = rhs[i] - sup[i] * m[i + 2]
        m[0] = 0.0
        m[n - 1] = 0.0
        hh = h[:, None]
        b = slope - (2 * hh * m[:-1] + hh * m[1:]) / 6
        c = m[:-1] / 2
        d = (m[1:] - m[:-1]) / (6 * hh)
        t = (h / times)[:, None] * np.arange(times, dtype=np.float64)[None, :]  # (n-1, times)
        a0 = p[:-1].astype(np.float64)
        xs = a0[:, 0:1] + b[:, 0:1] * t + c[:, 0:1] * np.power(t, 2) + d[:, 0:1] * np.power(t, 3)
        ys = a0[:, 1:2] + b[:, 1:2] * t + c[:, 1:2] * np.power(t, 2) + d[:, 1:2] * np.power(t, 3)
    out = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    return np.concatenate([out, p[-1:]], axis=0)


def cv_round(values: np.ndarray) -> np.ndarray:
    """OpenCV's float -> int ``cvRound`` on x86-64 (SSE2): nearest, ties to even; non-finite or out of
    int32 range gives INT_MIN (the "integer indefinite" value). Returns int32 of the same shape."""
    v = np.asarray(values, dtype=np.float32).astype(np.float64)
    ok = np.isfinite(v) & (v >= -2147483648.5) & (v < 2147483647.5)
    out = np.full(v.shape, _INT_MIN, dtype=np.int64)
    out[ok] = np.rint(v[ok])
    out[(out > np.iinfo(np.int32).max) | (out < _INT_MIN)] = _INT_MIN
    return out.astype(np.int32)


def drawn_points(lane: Any, image_size: tuple[int, int] = CULANE_SIZE,
                 canvas_size: tuple[int, int] = CULANE_SIZE) -> np.ndarray:
    """Integer vertices the official tool draws for one lane: (K, 2) int32, empty for < 2 points.

    image_size / canvas_size: (W, H); other image sizes are scaled as ``LaneCompare::resize_lane``.
    """
    pts = lane_points(lane)
    if len(pts) < 2:
        return np.zeros((0, 2), np.int32)
    if tuple(image_size) != tuple(canvas_size):
        scale = np.array([canvas_size[0] / float(image_size[0]), canvas_size[1] / float(image_size[1])])
        pts = (pts.astype(np.float64) * scale).astype(np.float32)
    if len(pts) > 2:
        pts = spline_interp_times(pts)
    return cv_round(pts)


def lane_mask(lane: Any, image_size: tuple[int, int] = CULANE_SIZE, canvas_size: tuple[int, int] = CULANE_SIZE,
              width: int = LINE_WIDTH) -> np.ndarray:
    """uint8 (H, W) canvas with the lane drawn ``width`` px wide as the official tool draws it (1 = lane)."""
    return _draw(lane, image_size, canvas_size, width).mask


@dataclass
class _Drawn:
    mask: np.ndarray  # full canvas, uint8
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) holding every painted pixel
    area: int
    valid: bool  # >= 2 points (the official similarity is 0 otherwise)


def _draw(lane: Any, image_size: tuple[int, int], canvas_size: tuple[int, int], width: int) -> _Drawn:
    """Draw one lane. One ``cv2.polylines`` call paints the same pixels as the official ``cv::line`` per
    segment: each segment is the same thick line, the round caps at shared vertices coincide, and repeated
    vertices (many spline samples round to the same pixel) add nothing."""
    cw, ch = canvas_size
    mask = np.zeros((ch, cw), dtype=np.uint8)
    pts = drawn_points(lane, image_size, canvas_size)
    if len(pts) < 2:
        return _Drawn(mask, (0, 0, 0, 0), 0, False)
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
    pts = np.ascontiguousarray(pts[keep])
    cv2.polylines(mask, [pts.reshape(-1, 1, 2)], isClosed=False, color=1, thickness=width)
    r = width // 2 + 2  # caps and line edges reach at most ~width/2 px past a vertex
    lo = np.clip(pts.astype(np.int64).min(axis=0) - r, 0, (cw, ch))
    hi = np.clip(pts.astype(np.int64).max(axis=0) + r + 1, 0, (cw, ch))
    box = (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
    area = int(cv2.countNonZero(mask[box[1]:box[3], box[0]:box[2]])) if box[0] < box[2] and box[1] < box[3] else 0
    return _Drawn(mask, box, area, True)


def iou_matrix(pred_lanes: Sequence[Any], gt_lanes: Sequence[Any], image_size: tuple[int, int] = CULANE_SIZE,
               canvas_size: tuple[int, int] = CULANE_SIZE, width: int = LINE_WIDTH) -> np.ndarray:
    """IoU of every (prediction, ground truth) pair, float64 (#pred, #gt), as ``get_lane_similarity``.

    Each lane is drawn once and intersections are counted only where the painted boxes overlap. A pair
    with a lane of < 2 points is 0; two lanes that paint nothing on the canvas give nan (0 / 0, as the
    official tool; it is never a true positive).
    """
    preds = [_draw(l, image_size, canvas_size, width) for l in pred_lanes]
    gts = [_draw(l, image_size, canvas_size, width) for l in gt_lanes]
    ious = np.zeros((len(preds), len(gts)))
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            if not (p.valid and g.valid):
                continue
            x0, y0 = max(p.box[0], g.box[0]), max(p.box[1], g.box[1])
            x1, y1 = min(p.box[2], g.box[2]), min(p.box[3], g.box[3])
            inter = 0
            if x0 < x1 and y0 < y1:
                inter = int(cv2.countNonZero(cv2.bitwise_and(p.mask[y0:y1, x0:x1], g.mask[y0:y1, x0:x1])))
            union = p.area + g.area - inter
            ious[i, j] = inter / union if union else float("nan")
    return ious


def km_match(weights: np.ndarray) -> np.ndarray:
    """The official ``pipartiteGraph::match`` (Kuhn-Munkres) on a (rows <= cols) weight matrix.

    Returns for each row the matched column (-1 if none). Faithful to the official code, including its
    1e-2 tolerance on tight edges (it may settle for an assignment up to that much below the optimum)
    and its early stop when no slack is left (a row of nan weights ends the matching).
    """
    w = [[float(v) for v in row] for row in np.asarray(weights, dtype=np.float64)]
    left_n = len(w)
    right_n = len(w[0]) if left_n else 0
    left_match = [-1] * left_n
    right_match = [-1] * right_n
    right_wt = [0.0] * right_n
    left_wt = []
    for row in w:
        best = -1e5
        for v in row:
            if best < v:
                best = v
        left_wt.append(best)
    left_used = [False] * left_n
    right_used = [False] * right_n

    def dfs(u: int) -> bool:
        left_used[u] = True
        for v in range(right_n):
            if not right_used[v] and abs(left_wt[u] + right_wt[v] - w[u][v]) < KM_TOLERANCE:
                right_used[v] = True
                if right_match[v] == -1 or dfs(right_match[v]):
                    right_match[v] = u
                    left_match[u] = v
                    return True
        return False

    for u in range(left_n):
        while True:
            left_used[:] = [False] * left_n
            right_used[:] = [False] * right_n
            if dfs(u):
                break
            slack = 1e10
            for i in range(left_n):
                if left_used[i]:
                    for j in range(right_n):
                        if not right_used[j]:
                            cand = left_wt[i] + right_wt[j] - w[i][j]
                            slack = cand if cand < slack else slack  # std::min(d, x): nan never wins
            if slack == 1e10:
                return np.asarray(left_match, dtype=np.int64)
            for i in range(left_n):
                if left_used[i]:
                    left_wt[i] -= slack
            for j in range(right_n):
                if right_used[j]:
                    right_wt[j] += slack
    return np.asarray(left_match, dtype=np.int64)


def match_ious(ious: np.ndarray, iou_thresh: float = IOU_THRESH) -> tuple[int, int, int, list[tuple[int, int, float]]]:
    """(tp, fp, fn, pairs (pred index, gt index, IoU)) from an IoU matrix (#pred, #gt), as ``count_im_pair``."""
    n_pred, n_gt = ious.shape
    if n_gt == 0 or n_pred == 0:
        return 0, n_pred, n_gt, []
    sim = ious.T  # official similarity: ground truth x detections
    if n_gt > n_pred:
        gt_match = np.full(n_gt, -1, dtype=np.int64)
        for p, g in enumerate(km_match(sim.T)):
            if g >= 0:
                gt_match[g] = p
    else:
        gt_match = km_match(sim)
    pairs = [(int(p), int(g), float(sim[g, p])) for g, p in enumerate(gt_match) if p >= 0 and sim[g, p] > iou_thresh]
    pairs.sort()
    tp = len(pairs)
    return tp, n_pred - tp, n_gt - tp, pairs


def match_lanes(pred_lanes: Sequence[Any], gt_lanes: Sequence[Any], image_size: tuple[int, int] = CULANE_SIZE,
                iou_thresh: float = IOU_THRESH, canvas_size: tuple[int, int] = CULANE_SIZE,
                width: int = LINE_WIDTH) -> tuple[int, int, int, list[tuple[int, int, float]]]:
    """(tp, fp, fn, matched pairs (pred index, gt index, IoU)) of one image, the official ``count_im_pair``."""
    if not len(pred_lanes) or not len(gt_lanes):
        return 0, len(pred_lanes), len(gt_lanes), []
    return match_ious(iou_matrix(pred_lanes, gt_lanes, image_size, canvas_size, width), iou_thresh)


def prf(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall, F1 of summed counts; ``None`` where the official tool prints -1 or nan.

    ``undefined`` lists why (empty when all three are defined).
    """
    undefined = []
    precision = recall = f1 = None
    if tp + fp:
        precision = tp / (tp + fp)
    else:
        undefined.append("precision: no detection (official -1)")
    if tp + fn:
        recall = tp / (tp + fn)
    else:
        undefined.append("recall: no ground-truth lane (official -1)")
    if precision is not None and recall is not None and precision + recall > 0:
        f1 = 2 * precision * recall / (precision + recall)
    elif precision is not None and recall is not None:
        undefined.append("f1: precision + recall = 0 (official nan)")
    else:
        undefined.append("f1: precision or recall undefined")
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1,
            "undefined": undefined}


class CULaneScorer:
    """Accumulates TP/FP/FN over images, overall and per category (CULane's scene lists)."""

    def __init__(self, iou_thresh: float = IOU_THRESH, width: int = LINE_WIDTH,
                 canvas_size: tuple[int, int] = CULANE_SIZE) -> None:
        self.iou_thresh = iou_thresh
        self.width = width
        self.canvas_size = canvas_size
        self.records: list[dict] = []

    def add(self, pred_lanes: Any, gt_lanes: Any, image_size: tuple[int, int] | None = None,
            category: str | None = None, frame_id: Any = None) -> dict:
        """Score one image. Lanes: list of Lane or (N, 2) x,y arrays (every lane counts, also one with
        fewer than 2 points); a LaneDetections or LabelledFrame is unpacked (its size used when
        ``image_size`` (W, H) is not given, else the official 1640x590)."""
        if image_size is None:
            for src in (gt_lanes, pred_lanes):
                w = getattr(src, "width", None) or getattr(src, "image_width", None)
                h = getattr(src, "height", None) or getattr(src, "image_height", None)
                if w and h:
                    image_size = (int(w), int(h))
                    break
            else:
                image_size = CULANE_SIZE
        preds = list(getattr(pred_lanes, "lanes", pred_lanes))
        gts = list(getattr(gt_lanes, "lanes", gt_lanes))
        tp, fp, fn, pairs = match_lanes(preds, gts, image_size, self.iou_thresh, self.canvas_size, self.width)
        record = {"frame": len(self.records) if frame_id is None else frame_id, "category": category,
                  "tp": tp, "fp": fp, "fn": fn, "pairs": pairs}
        self.records.append(record)
        return record

    def result(self) -> dict:
        """Overall precision / recall / F1 (+ per category when categories were given); ``None`` = undefined."""
        out = prf(sum(r["tp"] for r in self.records), sum(r["fp"] for r in self.records),
                  sum(r["fn"] for r in self.records))
        out["frames"] = len(self.records)
        cats: dict[str, list[dict]] = {}
        for r in self.records:
            if r["category"] is not None:
                cats.setdefault(r["category"], []).append(r)
        if cats:
            out["categories"] = {
                c: {**prf(sum(r["tp"] for r in rs), sum(r["fp"] for r in rs), sum(r["fn"] for r in rs)),
                    "frames": len(rs)}
                for c, rs in sorted(cats.items())
            }
        return out
