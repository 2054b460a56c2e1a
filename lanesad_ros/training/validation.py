"""Validation during training: the Detector on each val frame, scored with the official-metric scorers.

The same Detector path and metric code as ``lanesad-eval``; overlays (ground truth dots,
slot-coloured predictions) are written for the first ``eval.overlays`` frames.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from lanesad_ros.detector import Detector
from lanesad_ros.metrics.bdd100k import BDDScorer, lanes_to_mask
from lanesad_ros.metrics.culane import CULaneScorer
from lanesad_ros.metrics.tusimple import TuSimpleScorer
from lanesad_ros.training.export import model_metadata


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """{"tusimple": {"accuracy": ..}} -> {"tusimple.accuracy": ..} (numbers only, no per-frame lists)."""
    out = {}
    for group, values in metrics.items():
        if isinstance(values, dict):
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "frames":
                    out[f"{group}.{k}"] = float(v)
    return out


def best_key(cfg: dict, metrics: dict[str, Any]) -> str:
    key = cfg["eval"]["best_key"]
    if key != "auto":
        return key
    for candidate in ("culane.f1", "tusimple.accuracy", "bdd100k.iou"):
        if candidate in flat_metrics(metrics):
            return candidate
    return "tusimple.accuracy"


def metric_for(entry: dict, cfg: dict) -> str:
    chosen = cfg["eval"]["metric"]
    if chosen != "auto":
        return chosen
    return {"culane": "culane", "bdd100k": "bdd100k"}.get(entry["type"], "tusimple")


# BGR per slot LEFT_LEFT, LEFT, RIGHT, RIGHT_RIGHT (then UNKNOWN).
_SLOT_COLOURS = [(255, 128, 0), (0, 255, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255)]


def draw_validation(bgr: np.ndarray, frame, lanes) -> np.ndarray:
    """Ground truth as white dots, predictions as slot-coloured polylines (training overlays)."""
    out = bgr.copy()
    for lane in lanes:
        pts = np.round(lane.image_points).astype(np.int32).reshape(-1, 1, 2)
        colour = _SLOT_COLOURS[min(int(lane.slot), 4)]
        cv2.polylines(out, [pts], False, colour, 3, cv2.LINE_AA)
    for lane in frame.lanes:
        for x, y in np.asarray(lane):
            cv2.circle(out, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    return out


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, cfg: dict, val_sets: list[tuple[dict, Sequence]], device: torch.device,
                   overlay_dir: Path | None = None, iteration: int = 0, writer=None) -> dict[str, Any]:
    """Detector.from_model on each val frame, scored with the metrics module.

    Returns {"tusimple": {accuracy, fp, fn, frames, per_frame: [...]}, "culane": {...}, ...}
    for the metric kinds present.
    """

    was_training = model.training
    model.eval()
    detector = Detector.from_model(model, model_metadata(cfg), device=str(device), backend="torch",
                                   **cfg["eval"]["postprocess"])
    scorers: dict[str, Any] = {}
    overlays_left = cfg["eval"]["overlays"]
    limit = cfg["eval"]["max_frames"]
    for entry, frames in val_sets:
        kind = metric_for(entry, cfg)
        if kind == "none":
            continue
        name = entry["name"] or entry["type"]
        n = len(frames) if limit is None else min(limit, len(frames))
        for i in range(n):
            frame = frames[i]
            bgr = frame.load_image()
            det = detector.detect(bgr)
            frame_id = frame.meta.get("raw_file") or f"{name}/{i}"
            if kind == "tusimple":
                scorer = scorers.setdefault("tusimple", TuSimpleScorer())
                scorer.add(det.lanes, frame, frame_id=frame_id)
            elif kind == "culane":
                scorer = scorers.setdefault("culane", CULaneScorer())
                scorer.add(det.lanes, frame.lanes, image_size=(bgr.shape[1], bgr.shape[0]),
                           category=frame.meta.get("category"), frame_id=frame_id)
            else:
                scorer = scorers.setdefault("bdd100k", BDDScorer())
                size = (bgr.shape[1], bgr.shape[0])
                scorer.add(lanes_to_mask([l.image_points for l in det.lanes], size), lanes_to_mask(frame.lanes, size))
            if overlay_dir is not None and overlays_left > 0:
                overlays_left -= 1
                image = draw_validation(bgr, frame, det.lanes)
                scale = 640.0 / image.shape[1]
                image = cv2.resize(image, (640, int(round(image.shape[0] * scale))))
                overlay_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(overlay_dir / f"it{iteration:07d}_{name}_{i}.png"), image)
                if writer is not None:
                    writer.add_image(f"val/{name}_{i}", image[:, :, ::-1].copy(), iteration, dataformats="HWC")
    metrics: dict[str, Any] = {}
    for kind, scorer in scorers.items():
        result = dict(scorer.result())
        if kind == "tusimple":
            result["per_frame"] = [{k: r[k] for k in ("frame", "accuracy", "fp", "fn", "num_pred", "num_gt")}
                                   for r in scorer.records]
        metrics[kind] = result
    if writer is not None:
        for k, v in flat_metrics(metrics).items():
            writer.add_scalar(f"val/{k}", v, iteration)
    if was_training:
        model.train()
    return metrics
