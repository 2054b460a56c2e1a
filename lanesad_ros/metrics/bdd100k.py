"""BDD100K lane metrics: pixel accuracy and IoU of the binary lane class.

As in the SAD paper, "accuracy" is the lane class's pixel accuracy (lane pixels predicted as
lane / all ground-truth lane pixels); the overall pixel accuracy over all pixels is also
given, though background dominates it and it says little.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from lanesad_ros.lanes import Lane


def _binary(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} mask must be 2-D (H, W), got shape {mask.shape}")
    return mask > 0


def pixel_counts(pred_mask: np.ndarray, gt_mask: np.ndarray) -> dict:
    """Confusion counts of two masks (non-zero = lane)."""
    pred, gt = _binary(pred_mask, "prediction"), _binary(gt_mask, "ground-truth")
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: prediction {pred.shape}, ground truth {gt.shape}")
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": int(pred.size - tp - fp - fn)}


def _scores(c: dict) -> dict:
    total = c["tp"] + c["fp"] + c["fn"] + c["tn"]
    lane_px = c["tp"] + c["fn"]
    union = c["tp"] + c["fp"] + c["fn"]
    return {
        "accuracy": c["tp"] / lane_px if lane_px else (1.0 if c["fp"] == 0 else 0.0),
        "iou": c["tp"] / union if union else 1.0,
        "overall_accuracy": (c["tp"] + c["tn"]) / total if total else 1.0,
    }


def pixel_scores(pred_mask: np.ndarray, gt_mask: np.ndarray) -> dict:
    """{"accuracy" (lane-class pixel accuracy), "iou", "overall_accuracy"} of one image.

    Two empty masks agree perfectly (1.0); lane pixels predicted on an empty ground truth
    give accuracy 0 and IoU 0.
    """
    return _scores(pixel_counts(pred_mask, gt_mask))


def lanes_to_mask(lanes: Sequence[Any], size: tuple[int, int], width: int = 8) -> np.ndarray:
    """Draw lanes (Lane or (N, 2) x,y arrays) into a uint8 mask of ``size`` (W, H)."""
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    for lane in getattr(lanes, "lanes", lanes):
        pts = lane.image_points if isinstance(lane, Lane) else np.asarray(lane, dtype=np.float64).reshape(-1, 2)
        pts = np.asarray(pts)[np.asarray(pts)[:, 0] >= 0]
        if len(pts) >= 2:
            cv2.polylines(mask, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], False, 1, thickness=width)
    return mask


class BDDScorer:
    """Sums pixel counts over images (dataset-level accuracy and IoU, as the benchmark reports)."""

    def __init__(self) -> None:
        self.counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
        self.frames = 0

    def add(self, pred_mask: np.ndarray, gt_mask: np.ndarray) -> dict:
        c = pixel_counts(pred_mask, gt_mask)
        for k in self.counts:
            self.counts[k] += c[k]
        self.frames += 1
        return _scores(c)

    def result(self) -> dict:
        return {**_scores(self.counts), "frames": self.frames}
