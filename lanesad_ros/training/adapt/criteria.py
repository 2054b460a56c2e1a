"""Unlabelled criteria: how well a detector does on a camera's frames without any labels.

Computed with the deployed decoding (the Detector and the weights' own postprocess
settings), on the clean frames and on two fixed photometric perturbations of them:

- ``lanes_per_frame``: lanes reported per frame;
- ``sane_fraction``: share of reported lanes that pass the geometric checks of
  :mod:`lanesad_ros.training.adapt.checks` (smooth, straight on across the hood, through
  the drive's vanishing point, ordered, plausible spacing);
- ``view_agreement``: share of clean-frame lanes found again, same slot, within
  ``AGREE_TOL`` of the width (mean |dx| over shared rows), in *both* perturbed views
  (darker + noise; brighter + blur + strong JPEG): a lane that depends on exposure or
  compression is not seen, it is guessed;
- ``temporal_stability`` (sequences only): share of sane lanes with a same-slot sane lane
  within ``temporal_tol`` of the width in a neighbouring frame;
- ``stable_sane_lanes_per_frame``: lanes per frame that are sane *and* agree across views
  (and, frame by frame, ``stable_sane_lanes_of_each_frame``).

The last one is what adaptation's early stopping maximises. It rewards more lanes only when
they are geometrically plausible and do not change with the lighting, so neither a model
that says nothing nor one that draws snakes, loops over the hood or exposure-dependent guesses
scores well. It is computed on the adaptation frames themselves (the user's drive):
adaptation is transductive, and no labels are used.
"""
from __future__ import annotations

import cv2
import numpy as np

from lanesad_ros.lanes import Lane
from lanesad_ros.training.adapt.checks import Camera, LaneRules, check_lanes, temporal_filter

AGREE_TOL = 0.02  # of the image width: about TuSimple's 20 px at 1280 columns
CRITERION = "stable_sane_lanes_per_frame"
PER_FRAME = "stable_sane_lanes_of_each_frame"  # the criterion frame by frame (gain_holds)
BOOTSTRAP_RESAMPLES = 1000


def perturbed_views(image: np.ndarray, index: int) -> list[np.ndarray]:
    """Two fixed photometric perturbations of a BGR frame (deterministic per ``index``)."""
    rng = np.random.default_rng([7, int(index)])
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** 1.6, 0, 255).astype(np.uint8)  # darker (gamma 1.6)
    dark = cv2.LUT(image, lut).astype(np.float32) + rng.normal(0, 6.0, image.shape).astype(np.float32)
    dark = np.clip(dark, 0, 255).astype(np.uint8)
    bright = cv2.GaussianBlur(cv2.convertScaleAbs(image, alpha=1.5, beta=10), (0, 0), 1.2)
    ok, buf = cv2.imencode(".jpg", bright, [cv2.IMWRITE_JPEG_QUALITY, 30])
    bright = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else bright
    return [dark, bright]


def lanes_agree(a: Lane, b: Lane, width: int) -> bool:
    """Same slot and mean |dx| over the rows both cover below ``AGREE_TOL`` * width."""
    if a.slot != b.slot or len(a.image_points) < 2 or len(b.image_points) < 2:
        return False
    pa, pb = a.image_points, b.image_points
    lo, hi = max(pa[:, 1].min(), pb[:, 1].min()), min(pa[:, 1].max(), pb[:, 1].max())
    if hi - lo < 0.5 * min(np.ptp(pa[:, 1]), np.ptp(pb[:, 1])):
        return False
    rows = np.linspace(lo, hi, 10)
    xa = np.interp(rows, pa[np.argsort(pa[:, 1]), 1], pa[np.argsort(pa[:, 1]), 0])
    xb = np.interp(rows, pb[np.argsort(pb[:, 1]), 1], pb[np.argsort(pb[:, 1]), 0])
    return float(np.mean(np.abs(xa - xb))) <= AGREE_TOL * width


def unlabelled_criteria(detections: list[list[Lane]], views: list[list[list[Lane]]], camera: Camera,
                        rules: LaneRules, sequence: bool) -> dict:
    """Criteria of one source: ``detections[i]`` the lanes of clean frame i, ``views[i]`` the
    lanes of its perturbed views. Returns the module docstring's figures plus counts."""
    w = camera.size[0]
    n = len(detections)
    checked = [check_lanes(lanes, camera, rules, cut_hood=False) for lanes in detections]
    total = sum(len(lanes) for lanes in detections)
    sane = sum(c.ok for frame in checked for c in frame)
    agree = 0
    per_frame: list[int] = []  # stable sane lanes of each frame
    reasons: dict[str, int] = {}
    for lanes, frame_views, frame_checked in zip(detections, views, checked, strict=True):
        per_frame.append(0)
        for lane, c in zip(lanes, frame_checked, strict=True):
            ok_views = all(any(lanes_agree(lane, other, w) for other in view) for view in frame_views)
            agree += ok_views
            per_frame[-1] += ok_views and c.ok
            if not c.ok:
                reasons[c.reason] = reasons.get(c.reason, 0) + 1
    out = {
        "frames": n,
        "lanes_per_frame": total / max(n, 1),
        "sane_fraction": sane / max(total, 1),
        "view_agreement": agree / max(total, 1),
        CRITERION: sum(per_frame) / max(n, 1),
        PER_FRAME: per_frame,
        "rejected_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
    }
    if sequence and n >= 3:
        before = sum(c.ok for frame in checked for c in frame)
        temporal_filter(checked, camera, rules)
        after = sum(c.ok for frame in checked for c in frame)
        out["temporal_stability"] = after / max(before, 1)
    return out


def gain_holds(state: list[int], base: list[int], resamples: int = BOOTSTRAP_RESAMPLES) -> float:
    """Share of paired bootstrap resamples of the frames in which ``state``'s criterion (per frame,
    :data:`PER_FRAME`) sums higher than ``base``'s on the same frames (paired bootstrap resampling,
    Koehn, EMNLP 2004); fixed seed. On nine frames a gain of one lane on one frame holds in about 65 %
    of the resamples, the same gain spread over several frames in nearly all. Frames of a drive are
    not independent, so this is a floor for the noise, not its measure. ``[]`` gives 0; lists of
    different lengths (not the same frames) raise ValueError."""
    if len(state) != len(base):
        raise ValueError(f"gain_holds: {len(state)} frames against {len(base)}: not the same frames")
    diff = np.asarray(state, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    if diff.size == 0:
        return 0.0
    rng = np.random.default_rng(0)
    picks = rng.integers(0, diff.size, size=(resamples, diff.size))
    return float(np.mean(diff[picks].sum(axis=1) > 0))


def merge_criteria(per_source: list[dict]) -> dict:
    """Frame-weighted mean of several sources' criteria, their per-frame criterion concatenated
    (:data:`PER_FRAME`, source after source) and their ``rejected_by_reason`` counts summed (most
    frequent first): the report's "rejected lanes by reason" read from here."""
    frames = sum(c["frames"] for c in per_source)
    out: dict = {"frames": frames, PER_FRAME: [v for c in per_source for v in c.get(PER_FRAME, [])]}
    keys = {k for c in per_source for k, v in c.items() if isinstance(v, float)}
    for key in sorted(keys):
        parts = [(c[key], c["frames"]) for c in per_source if key in c]
        out[key] = sum(v * n for v, n in parts) / max(sum(n for _, n in parts), 1)
    reasons: dict[str, int] = {}
    for c in per_source:
        for reason, count in c.get("rejected_by_reason", {}).items():
            reasons[reason] = reasons.get(reason, 0) + count
    out["rejected_by_reason"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    return out
