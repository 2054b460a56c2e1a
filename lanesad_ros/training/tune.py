"""Postprocess thresholds chosen on validation frames, with an honest estimate of their score.

``lanesad-train tune WEIGHTS --config CFG [--write]`` runs the weights on the config's ``data.val``
frames for every (``exist_threshold``, ``prob_threshold``) pair of a grid, scores each frame
with the official TuSimple metric, and picks the pair with the highest TuSimple F1
(precision = 1 - FP rate, recall = 1 - FN rate, as LaneATT and CLRNet report TuSimple F1;
ties go to the higher accuracy). The chosen pair is what the weights' metadata recommends.

A score measured on the frames the thresholds were chosen on is optimistic, so the figure
reported beside it is *cross-fitted*: the validation clips are split into ``folds`` groups,
each group is scored with the pair chosen on the other groups, and the per-frame scores of
all groups are averaged. That figure never saw its own frames during the choice.
With ``--write`` the chosen pair goes into the metadata's ``postprocess`` and the figures
into ``metrics.validation`` (the JSON sidecar is rewritten atomically; tensors untouched).
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lanesad_ros.detector import Detector
from lanesad_ros.fileio import write_text_atomic
from lanesad_ros.metrics.tusimple import TuSimpleScorer, mean_scores
from lanesad_ros.model.weights import metadata_path, read_metadata
from lanesad_ros.training.data import frame_clip, load_frames

EXIST_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)
PROB_GRID = (0.2, 0.3, 0.4, 0.5)


def tusimple_f1(fp: float, fn: float) -> float:
    """F1 from TuSimple's FP and FN rates (precision 1 - FP, recall 1 - FN); 0 when both are 0."""
    precision, recall = 1.0 - fp, 1.0 - fn
    return 0.0 if precision + recall <= 0 else 2.0 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Setting:
    exist_threshold: float
    prob_threshold: float


def _summary(records: Sequence[dict]) -> dict:
    m = mean_scores(records)
    return {"accuracy": round(m["accuracy"], 4), "fp": round(m["fp"], 4), "fn": round(m["fn"], 4),
            "f1": round(tusimple_f1(m["fp"], m["fn"]), 4), "frames": m["frames"]}


def _best(scores: dict[Setting, list[dict]], frames: Sequence[int]) -> Setting:
    def key(setting: Setting) -> tuple[float, float]:
        s = _summary([scores[setting][i] for i in frames])
        return s["f1"], s["accuracy"]
    return max(scores, key=key)


def tune_thresholds(detector: Detector, frames: Sequence, clips: Sequence[str], folds: int = 2,
                    exist_grid: Sequence[float] = EXIST_GRID, prob_grid: Sequence[float] = PROB_GRID) -> dict:
    """Choose (exist, prob) thresholds on ``frames`` (LabelledFrame with TuSimple labels).

    ``clips``: the clip of each frame; folds never split a clip. Returns ``chosen`` (the pair),
    ``on_all`` (its score on all frames: optimistic, it chose on them), ``cross_fitted`` (the
    honest estimate, see the module docstring), ``folds`` and the whole ``grid``.
    Raises ValueError for fewer clips than folds.
    """
    unique = sorted(set(clips))
    if len(unique) < folds:
        raise ValueError(f"{len(unique)} validation clips cannot make {folds} folds")
    fold_of_clip = {clip: i % folds for i, clip in enumerate(unique)}
    images = [frame.load_image() for frame in frames]
    scores: dict[Setting, list[dict]] = {}
    grid = [Setting(e, p) for e, p in itertools.product(exist_grid, prob_grid)]
    for setting in tqdm(grid, desc="threshold grid", unit="setting"):
        detector.set_postprocess(exist_threshold=setting.exist_threshold, prob_threshold=setting.prob_threshold)
        scorer = TuSimpleScorer()
        for image, frame in zip(images, frames, strict=True):
            scorer.add(detector.detect(image).lanes, frame)
        scores[setting] = scorer.records
    everything = list(range(len(frames)))
    chosen = _best(scores, everything)
    cross, per_fold = [], []
    for k in range(folds):
        inside = [i for i in everything if fold_of_clip[clips[i]] == k]
        outside = [i for i in everything if fold_of_clip[clips[i]] != k]
        pick = _best(scores, outside)
        cross += [scores[pick][i] for i in inside]
        per_fold.append({"fold": k, "clips": sorted({clips[i] for i in inside}), "chosen": vars(pick),
                         **_summary([scores[pick][i] for i in inside])})
    detector.set_postprocess(exist_threshold=chosen.exist_threshold, prob_threshold=chosen.prob_threshold)
    return {"chosen": vars(chosen), "on_all": _summary(scores[chosen]), "cross_fitted": _summary(cross),
            "folds": per_fold, "selection": "max TuSimple F1 (1-FP, 1-FN), ties by accuracy",
            "grid": [{**vars(s), **_summary(r)} for s, r in scores.items()]}


def tune_weights(weights: str | Path, cfg: dict, folds: int = 2, write: bool = False) -> dict:
    """Tune the thresholds of ``weights`` on the TuSimple-labelled ``data.val`` entries of ``cfg``.

    Returns the result of :func:`tune_thresholds` plus ``frames_from`` (the entries used).
    With ``write`` the metadata JSON of ``weights`` gets ``postprocess`` (the chosen pair,
    other recommended options kept) and ``metrics.validation``. Raises ValueError when the
    config has no TuSimple validation entry.
    """
    entries = [e for e in cfg["data"]["val"] if e["type"] == "tusimple"]
    if not entries:
        raise ValueError("tune needs a TuSimple-labelled entry in data.val of the config")
    frames = [f for entry in entries for f in load_frames(entry, "val")]
    detector = Detector.from_weights(weights, device="cpu", backend="torch")
    result = tune_thresholds(detector, frames, [frame_clip(f) for f in frames], folds=folds)
    result["frames_from"] = [{k: e[k] for k in ("name", "root", "labels", "split_file", "split")} for e in entries]
    if write:
        meta = read_metadata(weights)
        meta["postprocess"] = {**meta.get("postprocess", {}), **result["chosen"]}
        meta.setdefault("metrics", {})["validation"] = {k: v for k, v in result.items() if k != "grid"}
        write_text_atomic(metadata_path(weights), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return result
