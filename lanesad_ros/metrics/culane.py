"""CULane lane metrics: lanes as 30 px wide lines at 1640x590, IoU > 0.5, optimal matching.

As the official CULane evaluation: every lane (prediction and ground truth) is drawn as a
30 px wide polyline on a 1640x590 canvas (other image sizes are scaled to it), the IoU of
every prediction/ground-truth pair is computed, an optimal one-to-one assignment
(Hungarian, maximising IoU) pairs them, and pairs with IoU > 0.5 are true positives.
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from lanesad_ros.lanes import Lane

CULANE_SIZE = (1640, 590)  # (width, height)
LINE_WIDTH = 30
IOU_THRESH = 0.5


def _points(lane: Any) -> np.ndarray:
    if isinstance(lane, Lane):
        pts = lane.image_points
    else:
        pts = np.asarray(lane, dtype=np.float64).reshape(-1, 2)
    pts = np.asarray(pts, dtype=np.float64)
    return pts[(pts[:, 0] >= 0) & (pts[:, 1] >= 0)]


def lane_mask(lane: Any, image_size: tuple[int, int], canvas_size: tuple[int, int] = CULANE_SIZE,
              width: int = LINE_WIDTH) -> np.ndarray:
    """Boolean mask of one lane drawn ``width`` px wide, scaled from ``image_size`` (W, H) to the canvas."""
    cw, ch = canvas_size
    mask = np.zeros((ch, cw), dtype=np.uint8)
    pts = _points(lane)
    if len(pts) < 2:
        return mask.astype(bool)
    sx, sy = cw / float(image_size[0]), ch / float(image_size[1])
    scaled = np.round(pts * (sx, sy)).astype(np.int32)
    scaled = scaled[np.argsort(-pts[:, 1], kind="stable")]  # bottom -> top, a proper polyline
    cv2.polylines(mask, [scaled.reshape(-1, 1, 2)], isClosed=False, color=1, thickness=width)
    return mask.astype(bool)


def iou_matrix(pred_lanes: Sequence[Any], gt_lanes: Sequence[Any], image_size: tuple[int, int],
               canvas_size: tuple[int, int] = CULANE_SIZE, width: int = LINE_WIDTH) -> np.ndarray:
    """IoU of every (prediction, ground truth) pair, shape (#pred, #gt)."""
    pm = [lane_mask(l, image_size, canvas_size, width) for l in pred_lanes]
    gm = [lane_mask(l, image_size, canvas_size, width) for l in gt_lanes]
    ious = np.zeros((len(pm), len(gm)))
    for i, p in enumerate(pm):
        for j, g in enumerate(gm):
            union = np.count_nonzero(p | g)
            ious[i, j] = np.count_nonzero(p & g) / union if union else 0.0
    return ious


def match_lanes(pred_lanes: Sequence[Any], gt_lanes: Sequence[Any], image_size: tuple[int, int],
                iou_thresh: float = IOU_THRESH, canvas_size: tuple[int, int] = CULANE_SIZE,
                width: int = LINE_WIDTH) -> tuple[int, int, int, list[tuple[int, int, float]]]:
    """(tp, fp, fn, matched pairs (pred index, gt index, IoU)) of one image."""
    if not pred_lanes or not gt_lanes:
        return 0, len(pred_lanes), len(gt_lanes), []
    ious = iou_matrix(pred_lanes, gt_lanes, image_size, canvas_size, width)
    rows, cols = linear_sum_assignment(ious, maximize=True)
    pairs = [(int(r), int(c), float(ious[r, c])) for r, c in zip(rows, cols) if ious[r, c] > iou_thresh]
    tp = len(pairs)
    return tp, len(pred_lanes) - tp, len(gt_lanes) - tp, pairs


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


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
        """Score one image. Lanes: list of Lane or (N, 2) x,y arrays; a LaneDetections or
        LabelledFrame is unpacked (its size used when ``image_size`` (W, H) is not given)."""
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
        """Overall precision / recall / F1 (+ per category when categories were given)."""
        out = _prf(sum(r["tp"] for r in self.records), sum(r["fp"] for r in self.records),
                   sum(r["fn"] for r in self.records))
        out["frames"] = len(self.records)
        cats: dict[str, list[dict]] = {}
        for r in self.records:
            if r["category"] is not None:
                cats.setdefault(r["category"], []).append(r)
        if cats:
            out["categories"] = {
                c: {**_prf(sum(r["tp"] for r in rs), sum(r["fp"] for r in rs), sum(r["fn"] for r in rs)),
                    "frames": len(rs)}
                for c, rs in sorted(cats.items())
            }
        return out
