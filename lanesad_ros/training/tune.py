"""Postprocess thresholds chosen on validation frames of every camera, with an honest estimate of their score.

``lanesad-train tune WEIGHTS --config CFG [--write]`` runs the weights on the config's ``data.val``
frames for every (``exist_threshold``, ``prob_threshold``) pair of a grid and scores each frame
with its dataset's official metric: TuSimple frames with the TuSimple metric (F1 from its FP and
FN rates: precision = 1 - FP, recall = 1 - FN, as LaneATT and CLRNet report TuSimple F1), CULane
frames with the CULane metric (F1 over lane matches at IoU 0.5, 30 px lines). The pair with the
highest *mean F1 over the cameras* wins (ties go to the higher TuSimple accuracy), so one default
serves every camera instead of the one with the most frames. The chosen pair is what the
weights' metadata recommends.

A score measured on the frames the thresholds were chosen on is optimistic, so the figure
reported beside it is *cross-fitted*: the validation frames are split into ``folds`` groups,
each group is scored with the pair chosen on the other groups, and the per-frame scores of all
groups are pooled. That figure never saw its own frames during the choice. Groups never split
a clip; a camera with fewer clips than folds is split by time within its clip (contiguous
blocks of its frames in name order), and every fold holds frames of every camera.
The cross-fitted figures come with 95 % percentile-bootstrap intervals over the frames (``interval95``):
how much the figure owes to which frames were validated on. They are a lower bound on the uncertainty:
frames of one clip are seconds apart, and the training seed moves CULane F1 about as much again
(docs/recipe-studies.md, "Seeds").
With ``--write`` the chosen pair goes into the metadata's ``postprocess`` and the figures into
``metrics.validation`` (the JSON sidecar is rewritten atomically; tensors untouched).
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from tqdm import tqdm

from lanesad_ros.detector import Detector
from lanesad_ros.evaluation.calibration import calibrate_weights
from lanesad_ros.evaluation.plots import plot_reliability
from lanesad_ros.fileio import write_text_atomic
from lanesad_ros.metrics.culane import CULaneScorer, prf
from lanesad_ros.metrics.tusimple import TuSimpleScorer, mean_scores
from lanesad_ros.model.weights import metadata_path, read_metadata
from lanesad_ros.training.data import frame_clip, load_frames
from lanesad_ros.training.validation import metric_for

EXIST_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)
PROB_GRID = (0.2, 0.3, 0.4, 0.5)
CAMERAS = ("tusimple", "culane")
BOOTSTRAP_RESAMPLES = 1000


def tusimple_f1(fp: float, fn: float) -> float:
    """F1 from TuSimple's FP and FN rates (precision 1 - FP, recall 1 - FN); 0 when both are 0."""
    precision, recall = 1.0 - fp, 1.0 - fn
    return 0.0 if precision + recall <= 0 else 2.0 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Setting:
    exist_threshold: float
    prob_threshold: float


@dataclass(frozen=True)
class ValFrame:
    """One validation frame: its metric (``tusimple`` | ``culane``), the frame and its fold group."""

    metric: str
    frame: object
    group: str


def _summary(records: Sequence[dict], metrics: Sequence[str]) -> dict:
    """Per camera figures of a set of per-frame records, plus ``objective`` (mean F1 over cameras)."""
    out: dict = {}
    tus = [r for r, m in zip(records, metrics, strict=True) if m == "tusimple"]
    cul = [r for r, m in zip(records, metrics, strict=True) if m == "culane"]
    if tus:
        s = mean_scores(tus)
        out["tusimple"] = {"accuracy": round(s["accuracy"], 4), "fp": round(s["fp"], 4), "fn": round(s["fn"], 4),
                           "f1": round(tusimple_f1(s["fp"], s["fn"]), 4), "frames": s["frames"]}
    if cul:
        s = prf(sum(r["tp"] for r in cul), sum(r["fp"] for r in cul), sum(r["fn"] for r in cul))
        out["culane"] = {k: (round(s[k], 4) if s.get(k) is not None else None)
                         for k in ("precision", "recall", "f1")}
        out["culane"]["frames"] = len(cul)
    f1s = [out[c]["f1"] or 0.0 for c in CAMERAS if c in out]
    out["objective"] = round(sum(f1s) / len(f1s), 4) if f1s else 0.0
    return out


def bootstrap_intervals(records: Sequence[dict], metrics: Sequence[str], resamples: int = BOOTSTRAP_RESAMPLES,
                        level: float = 0.95, seed: int = 0) -> dict:
    """Percentile-bootstrap intervals (Efron and Tibshirani, An Introduction to the Bootstrap, 1993, ch. 13) of
    the figures of :func:`_summary`: the frames of each camera resampled with replacement (as many as it has),
    ``resamples`` times, with a fixed ``seed``.

    Returns ``{camera: {figure: [low, high]}, "objective": [low, high]}`` for the cameras present. The interval
    covers which frames were validated on, nothing else (correlated frames of one clip, the training seed and
    other drives add to it). ValueError for no records or ``level`` outside (0, 1)."""
    if not records:
        raise ValueError("no records to bootstrap")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(metrics)
    by_camera = {c: np.flatnonzero(labels == c) for c in CAMERAS if c in metrics}
    draws = []
    for _ in range(resamples):
        picked = np.concatenate([rng.choice(idx, size=len(idx)) for idx in by_camera.values()])
        draws.append(_summary([records[i] for i in picked], [metrics[i] for i in picked]))
    tails = (50.0 * (1.0 - level), 50.0 * (1.0 + level))

    def interval(values: list[float]) -> list[float]:
        return [round(float(v), 4) for v in np.percentile(values, tails)]

    out: dict = {c: {f: interval([d[c][f] or 0.0 for d in draws]) for f in draws[0][c] if f != "frames"}
                 for c in by_camera}
    out["objective"] = interval([d["objective"] for d in draws])
    return out


def fold_groups(frames: Sequence[ValFrame], folds: int) -> list[int]:
    """Fold of each frame: per camera, its clips (or, with fewer clips than folds, contiguous time
    blocks of its clips) dealt round-robin to the folds. Raises ValueError when a camera has
    fewer frames than folds."""
    fold = [0] * len(frames)
    for metric in CAMERAS:
        idx = [i for i, f in enumerate(frames) if f.metric == metric]
        if not idx:
            continue
        if len(idx) < folds:
            raise ValueError(f"{len(idx)} {metric} validation frames cannot make {folds} folds")
        clips = sorted({frames[i].group for i in idx})
        if len(clips) >= folds:
            for i in idx:
                fold[i] = clips.index(frames[i].group) % folds
            continue
        for clip in clips:  # split each clip into time blocks
            members = sorted((i for i in idx if frames[i].group == clip), key=lambda i: str(frames[i].frame.image_path))
            for rank, i in enumerate(members):
                fold[i] = rank * folds // len(members)
    return fold


def tune_thresholds(detector: Detector, frames: Sequence[ValFrame], folds: int = 2,
                    exist_grid: Sequence[float] = EXIST_GRID, prob_grid: Sequence[float] = PROB_GRID) -> dict:
    """Choose (exist, prob) thresholds on ``frames`` (TuSimple- and/or CULane-labelled).

    Returns ``chosen`` (the pair), ``on_all`` (its per-camera score on all frames: optimistic,
    it chose on them), ``cross_fitted`` (the honest estimate, see the module docstring, with its
    ``interval95`` from :func:`bootstrap_intervals`),
    ``folds`` and the whole ``grid``. Raises ValueError for too few frames or clips for ``folds``.
    """
    if len(frames) < folds or folds < 2:
        raise ValueError(f"{len(frames)} validation frames cannot make {folds} folds")
    fold = fold_groups(frames, folds)
    if len(set(fold)) < folds:
        raise ValueError(f"{len(set(fold))} validation clips cannot make {folds} folds")
    metrics = [f.metric for f in frames]
    outputs, sizes = [], []
    for vf in tqdm(frames, desc="network", unit="frame"):  # once per frame; each setting only decodes
        image = vf.frame.load_image()
        outputs.append(detector.network_outputs(image))
        sizes.append((image.shape[1], image.shape[0]))
    scores: dict[Setting, list[dict]] = {}
    grid = [Setting(e, p) for e, p in itertools.product(exist_grid, prob_grid)]
    for setting in tqdm(grid, desc="threshold grid", unit="setting"):
        detector.set_postprocess(exist_threshold=setting.exist_threshold, prob_threshold=setting.prob_threshold)
        tusimple, culane, records = TuSimpleScorer(), CULaneScorer(), []
        for output, size, vf in zip(outputs, sizes, frames, strict=True):
            lanes = detector.decode(output, size)
            if vf.metric == "tusimple":
                records.append(tusimple.add(lanes, vf.frame))
            else:
                records.append(culane.add(lanes, vf.frame.lanes, image_size=size))
        scores[setting] = records

    def best(indices: Sequence[int]) -> Setting:
        def key(setting: Setting) -> tuple[float, float]:
            s = _summary([scores[setting][i] for i in indices], [metrics[i] for i in indices])
            return s["objective"], s.get("tusimple", {}).get("accuracy", 0.0)
        return max(scores, key=key)

    everything = list(range(len(frames)))
    chosen = best(everything)
    cross: list[dict | None] = [None] * len(frames)
    per_fold = []
    for k in range(folds):
        inside = [i for i in everything if fold[i] == k]
        pick = best([i for i in everything if fold[i] != k])
        for i in inside:
            cross[i] = scores[pick][i]
        per_fold.append({"fold": k, "groups": sorted({frames[i].group for i in inside}), "chosen": vars(pick),
                         **_summary([scores[pick][i] for i in inside], [metrics[i] for i in inside])})
    detector.set_postprocess(exist_threshold=chosen.exist_threshold, prob_threshold=chosen.prob_threshold)
    return {"chosen": vars(chosen), "on_all": _summary(scores[chosen], metrics),
            "cross_fitted": {**_summary(cross, metrics), "interval95": bootstrap_intervals(cross, metrics)},
            "folds": per_fold,
            "selection": "max mean F1 over cameras (TuSimple F1 from 1-FP, 1-FN; CULane F1), ties by TuSimple accuracy",
            "grid": [{**vars(s), **_summary(r, metrics)} for s, r in scores.items()]}


def validation_frames(cfg: dict) -> list[ValFrame]:
    """The TuSimple- and CULane-scored frames of ``cfg["data"]["val"]``, each with its clip
    (relative to its dataset root) as fold group."""
    out = []
    for entry in cfg["data"]["val"]:
        metric = metric_for(entry, cfg)
        if metric not in CAMERAS:
            continue
        root = Path(entry["root"]) if entry["root"] else None
        for frame in load_frames(entry, "val"):
            out.append(ValFrame(metric, frame, f"{metric}:{frame_clip(frame, root)}"))
    return out


def tune_weights(weights: str | Path, cfg: dict, folds: int = 2, write: bool = False) -> dict:
    """Tune the thresholds of ``weights`` on the TuSimple- and CULane-labelled ``data.val`` entries of ``cfg``.

    Returns the result of :func:`tune_thresholds` plus ``frames_from`` (the entries used).
    With ``write`` the metadata JSON of ``weights`` gets ``postprocess`` (the chosen pair,
    other recommended options kept) and ``metrics.validation``. Raises ValueError when the
    config has no TuSimple or CULane validation entry.
    """
    frames = validation_frames(cfg)
    if not frames:
        raise ValueError("tune needs a TuSimple- or CULane-labelled entry in data.val of the config")
    detector = Detector.from_weights(weights, device="cpu", backend="torch")
    result = tune_thresholds(detector, frames, folds=folds)
    result["frames_from"] = [{k: e[k] for k in ("name", "type", "root", "labels", "list_file", "split_file", "split")}
                             for e in cfg["data"]["val"] if metric_for(e, cfg) in CAMERAS]
    if write:
        meta = read_metadata(weights)
        meta["postprocess"] = {**meta.get("postprocess", {}), **result["chosen"]}
        meta.setdefault("metrics", {})["validation"] = {k: v for k, v in result.items() if k != "grid"}
        write_text_atomic(metadata_path(weights), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return result


def calibrate_on_config(weights: str | Path, cfg: dict, out: str | Path | None = None, write: bool = False,
                        method: str = "platt") -> dict:
    """Fit one existence calibration of ``weights`` on the validation frames of every camera of ``cfg``.

    The frames are those :func:`tune_weights` uses (``data.val``), each tagged with its metric
    (``tusimple`` | ``culane``), so the result's ``per_group`` holds each camera's reliability
    before and after the fit (in-sample). ``out``: a folder for ``reliability_<camera>.png`` (one
    diagram per camera, before and after) and ``calibration.json``. ``write``: store the fit in the
    weights' metadata (:func:`lanesad_ros.evaluation.calibration.calibrate_weights`). Run it before
    ``tune``: the thresholds are chosen on the calibrated scale.
    """
    frames = validation_frames(cfg)
    if not frames:
        raise ValueError("calibrate needs a TuSimple- or CULane-labelled entry in data.val of the config")
    labelled = (SimpleNamespace(image=f.frame.load_image(), ground_truth=f.frame, group=f.metric) for f in frames)
    names = sorted({f"{e['name'] or e['type']}" for e in cfg["data"]["val"] if metric_for(e, cfg) in CAMERAS})
    result = calibrate_weights(weights, labelled, method=method, write=write, backend="torch",
                               source=f"validation frames of the config ({', '.join(names)})")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for camera, rel in result.get("per_group", {}).items():
            plot_reliability({"before": rel["before"], "after (in-sample)": rel["after"]},
                             out / f"reliability_{camera}.png", title=f"lane existence reliability, {camera}")
        write_text_atomic(out / "calibration.json", json.dumps(result, indent=2, default=float) + "\n")
    return result
