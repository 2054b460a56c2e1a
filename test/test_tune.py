"""Threshold tuning on validation frames: the choice, the cross-fitted figure, the metadata."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import shared_path
from lanesad_ros.detector import Detector
from lanesad_ros.training.config import validate
from lanesad_ros.training.tune import tune_thresholds, tune_weights, tusimple_f1
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
    best = max(result["grid"], key=lambda g: (g["f1"], g["accuracy"]))
    assert (result["chosen"]["exist_threshold"], result["chosen"]["prob_threshold"]) == \
        (best["exist_threshold"], best["prob_threshold"])
    assert result["on_all"]["f1"] == best["f1"] and result["cross_fitted"]["frames"] == 3
    assert [len(f["clips"]) for f in result["folds"]] == [1, 1, 1]
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["metrics"]["validation"]["chosen"] == result["chosen"]
    detector = Detector.from_weights(weights, device="cpu", backend="torch")
    assert detector.config.exist_threshold == result["chosen"]["exist_threshold"]
    assert detector.config.prob_threshold == result["chosen"]["prob_threshold"]


def test_tune_needs_as_many_clips_as_folds():
    root = shared_path("tusimple")
    cfg = validate({"data": {"val": [{"type": "tusimple", "root": str(root), "labels": "labels.json"}]}})
    with pytest.raises(ValueError, match="3 validation clips cannot make 4 folds"):
        tune_weights(default_weights_path(), cfg, folds=4)
    with pytest.raises(ValueError, match="TuSimple-labelled entry"):
        tune_weights(default_weights_path(), validate({}), folds=2)
    with pytest.raises(ValueError, match="cannot make"):
        tune_thresholds(Detector.from_weights(default_weights_path(), device="cpu", backend="torch"), [], [], folds=2)
