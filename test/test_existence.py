"""Existence calibration: Platt / temperature fits, reliability bins and ECE, the Detector applying
the metadata's map, and calibrating a weights file."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from lanesad_ros.data.frames import LabelledFrame
from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.evaluation.calibration import calibrate_weights
from lanesad_ros.existence import apply_calibration, as_calibration, fit_calibration, logit, reliability, slot_presence
from lanesad_ros.postprocess import PostprocessConfig


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def miscalibrated(n=20000, scale=0.5, bias=-0.8, seed=0):
    """Raw probabilities sigmoid(z) whose true frequency is sigmoid(scale z + bias) (an overconfident head)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, n)
    present = rng.random(n) < sigmoid(scale * z + bias)
    return sigmoid(z), present


def test_reliability_bins_and_ece_by_hand():
    prob = np.array([0.05, 0.15, 0.95, 0.95, 1.0])
    present = np.array([False, False, True, False, True])
    r = reliability(prob, present, bins=10)
    assert r["samples"] == 5 and r["positives"] == 2
    assert [b["count"] for b in r["bins"]] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]  # 1.0 falls in the last bin
    last = r["bins"][-1]
    assert last["mean_prob"] == pytest.approx((0.95 + 0.95 + 1.0) / 3) and last["frac_present"] == pytest.approx(2 / 3)
    assert r["bins"][2]["mean_prob"] is None
    # |0 - .05| * 1 + |0 - .15| * 1 + |2/3 - .9667| * 3, over 5 samples
    assert r["ece"] == pytest.approx((0.05 + 0.15 + 3 * abs(2 / 3 - 2.9 / 3)) / 5)
    assert r["mce"] == pytest.approx(abs(2 / 3 - 2.9 / 3))
    assert r["brier"] == pytest.approx((0.05**2 + 0.15**2 + 0.05**2 + 0.95**2 + 0.0) / 5)
    with pytest.raises(ValueError, match="5 probabilities but 4"):
        reliability(prob, present[:4])
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        reliability(prob * 2, present)


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_fit_recovers_the_true_map_and_lowers_the_ece(method):
    true_bias = -0.8 if method == "platt" else 0.0
    prob, present = miscalibrated(bias=true_bias)
    fit = fit_calibration(prob, present, method=method)
    assert fit["method"] == method
    assert fit["scale"] == pytest.approx(0.5, abs=0.05)
    assert fit["bias"] == pytest.approx(true_bias, abs=0.1)
    before = reliability(prob, present)
    after = reliability(apply_calibration(prob, as_calibration(fit)), present)
    assert before["ece"] > 0.08 and after["ece"] < 0.02
    assert after["nll"] < before["nll"]


def test_calibration_values_and_errors():
    assert as_calibration(None) == (1.0, 0.0) and as_calibration({"scale": 2, "bias": -1, "method": "platt"}) == (2, -1)
    prob = np.array([0.01, 0.3, 0.5, 0.9], np.float32)
    np.testing.assert_array_equal(apply_calibration(prob, (1.0, 0.0)), prob)
    out = apply_calibration(prob, (0.5, 0.2))
    assert np.all(np.diff(out) > 0)  # monotonic: the ranking of slots is kept
    np.testing.assert_allclose(logit(out), 0.5 * logit(prob) + 0.2, atol=1e-4)
    for bad, match in (({"scale": 0.0}, "scale > 0"), ({"T": 2}, "unknown key"), ((1.0,), "scale, bias"),
                       ({"method": "isotonic"}, "method must be")):
        with pytest.raises(ValueError, match=match):
            as_calibration(bad)
    with pytest.raises(ValueError, match="all 3 slots are present"):
        fit_calibration(np.array([0.2, 0.5, 0.9]), np.ones(3, bool))
    np.testing.assert_array_equal(slot_presence([0, 2, 255, 2], 4), [True, False, True, False])


def test_detector_applies_the_metadata_calibration(random_weights, tmp_path):
    """The weights metadata's postprocess.exist_calibration reaches thresholds and confidences."""
    image = np.random.default_rng(0).integers(0, 255, (360, 640, 3), np.uint8)
    plain = Detector.from_weights(random_weights, device="cpu", backend="torch", exist_threshold=0.0,
                                  prob_threshold=0.0)
    raw = plain.detect(image)
    calibrated_path = tmp_path / "calibrated.safetensors"
    calibrated_path.write_bytes(random_weights.read_bytes())
    meta = json.loads(random_weights.with_suffix(".json").read_text())
    meta["postprocess"] = {"exist_calibration": {"method": "platt", "scale": 0.5, "bias": 1.0}}
    calibrated_path.with_suffix(".json").write_text(json.dumps(meta))
    det = Detector.from_weights(calibrated_path, device="cpu", backend="torch", exist_threshold=0.0, prob_threshold=0.0)
    assert det.config.exist_calibration == (0.5, 1.0)
    found = det.detect(image)
    expected = apply_calibration(raw.exist_prob, (0.5, 1.0))
    np.testing.assert_allclose(found.exist_prob, expected, rtol=1e-5)
    assert not np.allclose(found.exist_prob, raw.exist_prob)
    for lane in found.lanes:
        assert lane.confidence == pytest.approx(float(expected[lane.index]), rel=1e-5)
    # A threshold between a slot's raw and calibrated probability decides by the calibrated one.
    det.set_postprocess(exist_threshold=float(np.clip(expected.max() - 1e-3, 0.0, 1.0)))
    assert [lane.index for lane in det.detect(image).lanes] == [int(np.argmax(expected))]
    meta["postprocess"] = {"exist_calibration": {"scale": -1.0, "bias": 0.0}}
    calibrated_path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(DetectorError, match="scale > 0"):
        Detector.from_weights(calibrated_path, device="cpu", backend="torch")
    assert PostprocessConfig().exist_calibration == (1.0, 0.0)


def test_calibrating_a_weights_file_keeps_its_decisions(random_weights, tmp_path):
    """calibrate_weights fits on labelled frames, writes the map and the carried-over threshold
    into the metadata; the calibrated weights then report the same lanes, with new confidences."""
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(random_weights.read_bytes())
    meta = json.loads(random_weights.with_suffix(".json").read_text())
    meta["postprocess"] = {"exist_threshold": 0.45, "prob_threshold": 0.0}
    weights.with_suffix(".json").write_text(json.dumps(meta))
    rng = np.random.default_rng(1)
    frames = [SimpleNamespace(image=rng.integers(0, 255, (180, 320, 3), np.uint8),
                              ground_truth=LabelledFrame(None, None, [np.zeros((2, 2))] * len(slots), list(slots)))
              for slots in ([1, 2], [0, 1, 2], [1, 2, 3], [0, 1, 2, 3], [2], [1, 2])]
    frames.append(SimpleNamespace(image=frames[0].image, ground_truth=None))  # unlabelled: skipped
    before = Detector.from_weights(weights, device="cpu", backend="torch")
    lanes_before = [[lane.index for lane in before.detect(f.image).lanes] for f in frames]
    result = calibrate_weights(weights, frames, method="platt", bins=5, source="six test frames", write=True,
                               backend="torch")
    assert result["frames"] == 6 and result["before"]["samples"] == 24 and result["before"]["positives"] == 15
    assert result["after"]["nll"] <= result["before"]["nll"] + 1e-9
    stored = json.loads(weights.with_suffix(".json").read_text())
    assert stored["postprocess"]["exist_calibration"] == result["fit"]
    assert stored["exist_calibration"]["fitted_on"] == "six test frames" and stored["exist_calibration"]["frames"] == 6
    assert stored["postprocess"]["exist_threshold"] == pytest.approx(result["exist_threshold"]["after"], abs=1e-6)
    after = Detector.from_weights(weights, device="cpu", backend="torch")
    assert after.config.exist_calibration == (result["fit"]["scale"], result["fit"]["bias"])
    assert [[lane.index for lane in after.detect(f.image).lanes] for f in frames] == lanes_before
    with pytest.raises(ValueError, match="no frame with ground truth"):
        calibrate_weights(weights, frames[-1:], backend="torch")
