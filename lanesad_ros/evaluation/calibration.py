"""Calibrate a weights file's lane-existence output on labelled validation frames.

``lanesad-eval calibrate-existence VAL_BAG --weights W`` runs W's detector on the frames
*without* any existing calibration, collects each (frame, slot) pair's existence probability
and whether the ground truth has a lane in that slot, fits Platt (or temperature) scaling of
the existence logit (``lanesad_ros.existence``), and with ``--write`` stores the map in W's
metadata as ``postprocess.exist_calibration`` (the Detector applies it before
``exist_threshold``) plus the provenance under ``exist_calibration``. Fit it on the
validation split only, never on the frames whose scores are reported.

Because the map is monotonic, a recommended ``exist_threshold`` already in the metadata is
carried over to the calibrated scale (``t' = map(t)``; without one, the Detector's default
0.5), so the same lanes are reported and only their confidences change; choose a new
threshold on validation afterwards if wanted.
"""
from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lanesad_ros.detector import Detector
from lanesad_ros.existence import apply_calibration, as_calibration, fit_calibration, reliability, slot_presence
from lanesad_ros.fileio import write_text_atomic
from lanesad_ros.model.weights import metadata_path, read_metadata
from lanesad_ros.postprocess import PostprocessConfig

IDENTITY = (1.0, 0.0)


def existence_samples(detector: Detector, frames: Iterable[Any], max_frames: int = 0,
                      groups: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Existence probabilities of every slot on labelled frames: (prob (N,), present (N,), frames used).

    ``frames``: objects with ``image`` (BGR uint8) and ``ground_truth`` (a LabelledFrame with
    ``slots``, or None: skipped), e.g. a BagReader's ``frames()``. N = frames used x lane slots.
    The probabilities are what ``detector`` reports (calibrated if its config says so).
    ``frames`` may carry a ``group`` (e.g. the camera); with a ``groups`` list given, each
    sample's group is appended to it (N entries, ``""`` for frames without one).
    """
    probs, present, used = [], [], 0
    for index, frame in enumerate(frames):
        if max_frames and index >= max_frames:
            break
        if frame.ground_truth is None:
            continue
        found = detector.detect(frame.image)
        probs.append(found.exist_prob)
        present.append(slot_presence(frame.ground_truth.slots, len(found.exist_prob)))
        if groups is not None:
            groups.extend([getattr(frame, "group", "")] * len(found.exist_prob))
        used += 1
    if not used:
        raise ValueError("no frame with ground truth: existence calibration needs labelled validation frames")
    return np.concatenate(probs), np.concatenate(present), used


def calibrate_weights(weights: str | Path, frames: Iterable[Any], *, method: str = "platt", bins: int = 10,
                      source: str = "", max_frames: int = 0, write: bool = False, device: str = "cpu",
                      backend: str = "auto") -> dict:
    """Fit the existence calibration of ``weights`` on ``frames`` and optionally store it.

    Returns ``{"fit", "before", "after", "frames", "source", "exist_threshold"}`` where before/after are
    ``reliability()`` results of the uncalibrated and calibrated probabilities on the same
    frames (so "after" is an in-sample figure: the check of the fit, not a test score), and,
    when the frames carry a ``group`` (the camera), ``per_group``: the same two per group, so
    one fit can be checked on every camera it serves.
    ``write``: update the weights' .json metadata atomically (see the module docstring).
    """
    weights = Path(weights)
    meta = read_metadata(weights)
    detector = Detector.from_weights(weights, device=device, backend=backend, exist_calibration=IDENTITY)
    groups: list[str] = []
    prob, present, used = existence_samples(detector, frames, max_frames=max_frames, groups=groups)
    fit = fit_calibration(prob, present, method=method)
    calibrated = apply_calibration(prob, as_calibration(fit))
    result = {"fit": fit, "frames": used, "before": reliability(prob, present, bins),
              "after": reliability(calibrated, present, bins), "source": source}
    names = sorted({g for g in groups if g})
    if names:
        labels = np.asarray(groups)
        result["per_group"] = {g: {"before": reliability(prob[labels == g], present[labels == g], bins),
                                   "after": reliability(calibrated[labels == g], present[labels == g], bins)}
                               for g in names}
    # The threshold the weights used so far (recommended, else the Detector's default), on the new scale.
    old_threshold = float(meta.get("postprocess", {}).get("exist_threshold", PostprocessConfig().exist_threshold))
    raw_threshold = _invert(old_threshold, as_calibration(meta.get("postprocess", {}).get("exist_calibration")))
    result["exist_threshold"] = {"before": old_threshold,
                                 "after": float(apply_calibration(np.array([raw_threshold]), as_calibration(fit))[0])}
    if write:
        postprocess = dict(meta.get("postprocess", {}))
        postprocess["exist_calibration"] = fit
        postprocess["exist_threshold"] = round(result["exist_threshold"]["after"], 6)
        meta["postprocess"] = postprocess
        meta["exist_calibration"] = {
            **fit, "fitted_on": source, "frames": used, "samples": result["before"]["samples"],
            "positives": result["before"]["positives"], "bins": bins,
            "ece_before": round(result["before"]["ece"], 4), "ece_after_in_sample": round(result["after"]["ece"], 4),
            "nll_before": round(result["before"]["nll"], 4), "nll_after_in_sample": round(result["after"]["nll"], 4),
            "fitted_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        if "per_group" in result:
            meta["exist_calibration"]["per_camera"] = {
                g: {"samples": r["before"]["samples"], "ece_before": round(r["before"]["ece"], 4),
                    "ece_after_in_sample": round(r["after"]["ece"], 4)} for g, r in result["per_group"].items()}
        write_text_atomic(metadata_path(weights), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return result


def _invert(prob: float, calibration: tuple[float, float]) -> float:
    """The raw probability that ``calibration`` maps to ``prob`` (for carrying a threshold over)."""
    scale, bias = calibration
    if (scale, bias) == IDENTITY or prob in (0.0, 1.0):
        return prob
    z = (np.log(prob) - np.log1p(-prob) - bias) / scale
    return float(1.0 / (1.0 + np.exp(-z)))
