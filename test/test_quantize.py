"""INT8 path: the accuracy guard's arithmetic, and that only a model that passed it is offered."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lanesad_ros.backends import cache
from lanesad_ros.backends.quantize import MAX_ACCURACY_DROP, lane_shifts, run_guard, validation_frames
from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot

ROWS = np.arange(160, 720, 10, dtype=np.float32)


def detections(xs_by_index: dict[int, float]) -> LaneDetections:
    """Vertical lanes at the given x (source px), one per lane index, on the TuSimple rows."""
    lanes = [Lane(slot=LaneSlot.from_index(i), index=i, confidence=0.9,
                  image_points=np.stack([np.full(ROWS.shape, x, np.float32), ROWS[::-1]], 1))
             for i, x in xs_by_index.items()]
    return LaneDetections(lanes=lanes, image_width=1280, image_height=720)


class Replay:
    """A stand-in detector answering each frame with the next prepared LaneDetections."""

    def __init__(self, answers):
        self.answers = list(answers)

    def detect(self, image):
        return self.answers.pop(0)


def labelled(tmp_path, xs: list[float], name: str) -> dict:
    import cv2

    image = tmp_path / f"{name}.jpg"
    cv2.imwrite(str(image), np.zeros((720, 1280, 3), np.uint8))
    return {"raw_file": f"{name}.jpg", "h_samples": ROWS.tolist(), "lanes": [[float(x)] * len(ROWS) for x in xs],
            "_image": image}


def test_lane_shift_compares_the_same_lane_on_common_rows():
    a, b = detections({0: 400.0, 1: 600.0}), detections({0: 403.0, 1: 600.5, 2: 900.0})
    assert sorted(lane_shifts(a, b, ROWS)) == pytest.approx([0.5] * len(ROWS) + [3.0] * len(ROWS))


def test_guard_passes_small_moves_and_fails_a_lost_lane_or_a_large_move(tmp_path):
    frames = [labelled(tmp_path, [400.0, 600.0], "f0"), labelled(tmp_path, [420.0, 640.0], "f1")]
    exact = [detections({0: 400.0, 1: 600.0}), detections({0: 420.0, 1: 640.0})]
    near = [detections({0: 401.0, 1: 601.0}), detections({0: 421.0, 1: 641.0})]
    record = run_guard(Replay(exact), Replay(near), frames)
    assert record["passed"] and record["median_shift_px"] == pytest.approx(1.0)
    assert record["accuracy_fp32"] == record["accuracy_int8"] == pytest.approx(1.0)
    lost = [detections({0: 400.0}), detections({0: 420.0, 1: 640.0})]  # one lane of four missing
    record = run_guard(Replay(exact), Replay(lost), frames)
    assert not record["passed"] and record["accuracy_fp32"] - record["accuracy_int8"] > MAX_ACCURACY_DROP
    moved = [detections({0: 408.0, 1: 608.0}), detections({0: 428.0, 1: 648.0})]  # within TuSimple's 20 px
    record = run_guard(Replay(exact), Replay(moved), frames)
    assert record["accuracy_int8"] == pytest.approx(1.0) and not record["passed"]
    assert "median lane shift 8.00 px" in record["verdict"]


def test_validation_frames_follow_the_split(tmp_path):
    for clip in ("clips/a/1", "clips/b/2"):
        (tmp_path / clip).mkdir(parents=True)
        (tmp_path / clip / "20.jpg").write_bytes(b"")
    lines = [json.dumps({"raw_file": f"{c}/20.jpg", "h_samples": [160], "lanes": [[1.0]]})
             for c in ("clips/a/1", "clips/b/2")]
    (tmp_path / "labels.json").write_text("\n".join(lines) + "\n")
    (tmp_path / "val.txt").write_text("# held out\nclips/b/2\n")
    frames, described = validation_frames(tmp_path / "labels.json", tmp_path / "val.txt")
    assert [f["raw_file"] for f in frames] == ["clips/b/2/20.jpg"] and "1 clips" in described
    frames, described = validation_frames(tmp_path / "labels.json", None)
    assert len(frames) == 2 and described.startswith("2 frames: all of")


def test_int8_offered_only_after_a_passed_guard(random_weights, tmp_path, monkeypatch):
    ov = pytest.importorskip("openvino")
    monkeypatch.setenv("LANESAD_CACHE_DIR", str(tmp_path / "cache"))
    fp32 = Detector.from_weights(random_weights, device="cpu", backend="openvino", threads=1)
    folder = cache.int8_dir(fp32.artefact_base())
    folder.mkdir(parents=True)
    # The fp32 graph stands in for a quantised one: this checks the offering, not the quantisation.
    ov.save_model(ov.Core().read_model(str(fp32.onnx_path(pooling_indices=False))), str(folder / "model.xml"))
    (folder / "guard.json").write_text(json.dumps({"passed": False, "verdict": "accuracy dropped"}))
    with pytest.raises(DetectorError, match="guard failed: accuracy dropped"):
        Detector.from_weights(random_weights, device="cpu", backend="openvino-int8")
    assert "openvino-int8" not in [c.kind for c in fp32._candidates("auto")]
    (folder / "guard.json").write_text(json.dumps({"passed": True, "verdict": "ok"}))
    int8 = Detector.from_weights(random_weights, device="cpu", backend="openvino-int8", threads=1)
    assert int8.backend_name == "openvino-int8"
    assert [c.kind for c in fp32._candidates("auto")][-1] == "openvino-int8"  # last: must be clearly faster
