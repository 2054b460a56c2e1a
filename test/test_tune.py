"""Threshold tuning on validation frames: the choice, the cross-fitted figure, the metadata."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import pytest

from conftest import shared_path
from lanesad_ros.detector import Detector
from lanesad_ros.training.config import validate
from lanesad_ros.training.tune import (
    ValFrame,
    bootstrap_intervals,
    calibrate_on_config,
    fold_groups,
    tune_thresholds,
    tune_weights,
    tusimple_f1,
)
from lanesad_ros.weights import default_weights_path


def test_tusimple_f1_from_rates():
    assert tusimple_f1(0.0, 0.0) == 1.0
    assert tusimple_f1(1.0, 1.0) == 0.0
    assert tusimple_f1(0.2, 0.4) == pytest.approx(2 * 0.8 * 0.6 / 1.4)


def test_tune_picks_the_best_f1_and_writes_metadata(tmp_path):
    root = shared_path("tusimple")
    weights = tmp_path / "w.safetensors"
    shutil.copy(default_weights_path(), weights)
    shutil.copy(default_weights_path().with_suffix(".json"), weights.with_suffix(".json"))
    cfg = validate({"data": {"val": [{"type": "tusimple", "root": str(root), "labels": "labels.json"}]}})
    result = tune_weights(weights, cfg, folds=3, write=True)
    best = max(result["grid"], key=lambda g: (g["objective"], g["tusimple"]["accuracy"]))
    assert (result["chosen"]["exist_threshold"], result["chosen"]["prob_threshold"]) == \
        (best["exist_threshold"], best["prob_threshold"])
    assert result["on_all"]["tusimple"]["f1"] == best["tusimple"]["f1"] == result["on_all"]["objective"]
    assert result["cross_fitted"]["tusimple"]["frames"] == 3 and "culane" not in result["cross_fitted"]
    assert [len(f["groups"]) for f in result["folds"]] == [1, 1, 1]
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["metrics"]["validation"]["chosen"] == result["chosen"]
    detector = Detector.from_weights(weights, device="cpu", backend="torch")
    assert detector.config.exist_threshold == result["chosen"]["exist_threshold"]
    assert detector.config.prob_threshold == result["chosen"]["prob_threshold"]


def test_tune_needs_as_many_clips_as_folds():
    root = shared_path("tusimple")
    cfg = validate({"data": {"val": [{"type": "tusimple", "root": str(root), "labels": "labels.json"}]}})
    with pytest.raises(ValueError, match="3 validation frames cannot make 4 folds"):
        tune_weights(default_weights_path(), cfg, folds=4)
    with pytest.raises(ValueError, match="TuSimple- or CULane-labelled entry"):
        tune_weights(default_weights_path(), validate({}), folds=2)
    with pytest.raises(ValueError, match="cannot make"):
        tune_thresholds(Detector.from_weights(default_weights_path(), device="cpu", backend="torch"), [], folds=2)


def test_folds_split_a_lone_clip_by_time_and_hold_every_camera():
    """A camera with fewer clips than folds (one CULane drive) is split into contiguous time
    blocks of its clip; a camera with enough clips is split by clip; every fold holds both."""

    @dataclass
    class _F:
        image_path: str

    frames = ([ValFrame("culane", _F(f"d/clip/{i:05d}.jpg"), "culane:d/clip") for i in (30, 0, 90, 60)]
              + [ValFrame("tusimple", _F(f"c{i}/20.jpg"), f"tusimple:c{i}") for i in range(3)])
    fold = fold_groups(frames, 2)
    assert fold[:4] == [0, 0, 1, 1]  # 00000, 00030 | 00060, 00090
    assert fold[4:] == [0, 1, 0]
    with pytest.raises(ValueError, match="1 culane validation frames cannot make 2 folds"):
        fold_groups(frames[:1], 2)


def test_tune_scores_culane_frames_with_the_culane_metric():
    root = shared_path("culane-train")
    cfg = validate({"data": {"val": [{"type": "culane", "root": str(root), "list_file": "list.txt",
                                      "max_frames": 4}]}, "eval": {"metric": "auto"}})
    result = tune_weights(default_weights_path(), cfg, folds=2)
    assert set(result["cross_fitted"]) == {"culane", "objective", "interval95"}
    low, high = result["cross_fitted"]["interval95"]["culane"]["f1"]
    assert low <= (result["cross_fitted"]["culane"]["f1"] or 0.0) <= high
    assert result["cross_fitted"]["culane"]["frames"] == 4
    assert result["on_all"]["objective"] == (result["on_all"]["culane"]["f1"] or 0.0)


def test_calibrate_fits_one_map_and_checks_it_on_every_camera(tmp_path):
    """One Platt fit on the validation frames of both cameras, with each camera's reliability
    (before / after) reported, drawn and written to the metadata."""
    tusimple, culane = shared_path("tusimple"), shared_path("culane-train")
    weights = tmp_path / "w.safetensors"
    shutil.copy(default_weights_path(), weights)
    shutil.copy(default_weights_path().with_suffix(".json"), weights.with_suffix(".json"))
    cfg = validate({"data": {"val": [
        {"type": "tusimple", "root": str(tusimple), "labels": "labels.json"},
        {"type": "culane", "root": str(culane), "list_file": "list.txt", "max_frames": 5}]},
        "eval": {"metric": "auto"}})
    result = calibrate_on_config(weights, cfg, out=tmp_path / "cal", write=True)
    assert set(result["per_group"]) == {"tusimple", "culane"}
    assert result["per_group"]["tusimple"]["before"]["samples"] == 3 * 4
    assert result["per_group"]["culane"]["before"]["samples"] == 5 * 4
    assert (tmp_path / "cal" / "reliability_culane.png").stat().st_size > 0
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert set(meta["exist_calibration"]["per_camera"]) == {"tusimple", "culane"}
    assert meta["postprocess"]["exist_calibration"] == result["fit"]


def test_bootstrap_intervals_bracket_the_figure_and_repeat():
    """Half the CULane frames all right (1 TP), half all wrong (1 FP, 1 FN): F1 0.5, an interval around it
    that resampling 100 frames cannot make narrow; TuSimple frames all perfect: a point interval."""
    culane = [{"tp": 1, "fp": 0, "fn": 0}] * 50 + [{"tp": 0, "fp": 1, "fn": 1}] * 50
    tusimple = [{"accuracy": 1.0, "fp": 0.0, "fn": 0.0}] * 20
    records, metrics = culane + tusimple, ["culane"] * 100 + ["tusimple"] * 20
    out = bootstrap_intervals(records, metrics)
    low, high = out["culane"]["f1"]
    assert 0.35 < low < 0.5 < high < 0.65
    assert out["tusimple"] == {"accuracy": [1.0, 1.0], "fp": [0.0, 0.0], "fn": [0.0, 0.0], "f1": [1.0, 1.0]}
    assert out["objective"][0] < 0.75 < out["objective"][1]
    assert bootstrap_intervals(records, metrics) == out  # a fixed seed: the same report twice
    assert bootstrap_intervals(records, metrics, level=0.5)["culane"]["f1"][1] < high
    assert set(bootstrap_intervals(culane, ["culane"] * 100)) == {"culane", "objective"}


def test_bootstrap_intervals_refuse_nothing_and_a_bad_level():
    with pytest.raises(ValueError, match="no records"):
        bootstrap_intervals([], [])
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_intervals([{"tp": 1, "fp": 0, "fn": 0}], ["culane"], level=1.0)
