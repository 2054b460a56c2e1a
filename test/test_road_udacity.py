"""The road model on real frames: the bundled Udacity clip (demo/udacity, 38 frames of a highway
by day) through the shipped detector and the clip's calibrated camera. There the ego lane has a
solid yellow left and a dashed white right boundary, and US Interstate lanes are 12 ft (3.66 m)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from road_scenes import udacity_projector

from conftest import REPO_ROOT
from lanesad_ros.detector import Detector
from lanesad_ros.lanes import LaneSlot
from lanesad_ros.road import MarkingColor, MarkingType, RoadModelStage

CLIP = REPO_ROOT / "demo" / "udacity" / "project_video_clip.mp4"


@pytest.fixture(scope="module")
def models():
    capture = cv2.VideoCapture(str(CLIP))
    fps = capture.get(cv2.CAP_PROP_FPS)
    detector = Detector.from_weights(device="cpu")
    projector = udacity_projector()
    stage = RoadModelStage()
    out = []
    index = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        detections = detector.detect(bgr)
        out.append(stage.update(detections, bgr, projector, index / fps))
        index += 1
    capture.release()
    assert index == 38, f"read {index} frames of {CLIP}"
    return out


def test_lane_width_is_a_us_interstate_lane(models):
    widths = np.array([m.ego.lane_width if m.ego.valid else np.nan for m in models])
    inside = (widths >= 3.4) & (widths <= 3.9)
    assert inside.mean() >= 0.9, widths


def test_left_is_solid_yellow_and_right_dashed_white(models):
    left = right = 0
    for model in models:
        kinds = {b.slot: (b.marking.type, b.marking.color) for b in model.boundaries}
        left += kinds.get(LaneSlot.LEFT) == (MarkingType.SOLID, MarkingColor.YELLOW)
        right += kinds.get(LaneSlot.RIGHT) == (MarkingType.DASHED, MarkingColor.WHITE)
    assert left / len(models) >= 0.9 and right / len(models) >= 0.9, (left, right, len(models))


def test_ego_lane_is_measured_and_plausible(models):
    """Every frame sees both ego boundaries: measured (not predicted) after the first, with a
    variance, the car within half a lane of the centre and nearly parallel to it."""
    for model in models:
        ego = model.ego
        assert ego.valid and not ego.predicted and ego.lane_change == 0
        assert abs(ego.lateral_offset) < 1.0 and abs(np.degrees(ego.heading_error)) < 5.0
        assert np.all(ego.variances > 0)
