"""Lanes on the ground plane (lanesad_ros.ground_check): the real label geometry of both datasets
passes, kerbs and stop lines across the view, lines on vehicles, lanes on the wrong side, lanes
too close together and diverging lanes do not."""
from __future__ import annotations

import glob
import json
import math

import numpy as np
import pytest
from road_scenes import lane_pixels, pinhole_projector, udacity_projector

from conftest import shared_path
from lanesad_ros.camera import CameraModel, GroundProjector, Mounting, mounting_from_straight_lanes
from lanesad_ros.data.culane import read_culane_list
from lanesad_ros.detector import Detector
from lanesad_ros.ground_check import check_on_ground
from lanesad_ros.lanes import Lane, LaneSlot
from lanesad_ros.slots import assign_slots

L_L, L, R, R_R = LaneSlot.LEFT_LEFT, LaneSlot.LEFT, LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT


def _lane(projector, slot, coef, confidence=0.9) -> Lane:
    """A lane as the detector reports it (bottom-up pixels on its sample rows) of the ground cubic y(x) = coef."""
    return Lane(slot=slot, confidence=confidence, image_points=lane_pixels(projector, coef))


def _ground_segment(projector, slot, start, end, confidence=0.99) -> Lane:
    """A lane whose pixels are those of the straight ground segment ``start`` -> ``end`` (x, y metres)."""
    t = np.linspace(0.0, 1.0, 20)[:, None]
    ground = np.hstack([np.asarray(start) + t * (np.asarray(end) - np.asarray(start)), np.zeros((20, 1))])
    px = projector.ground_to_image(ground)
    return Lane(slot=slot, confidence=confidence, image_points=px[np.argsort(-px[:, 1], kind="stable")])


def _verdict(projector, lanes):
    verdict = check_on_ground(lanes, projector)
    return verdict.keep.tolist(), verdict


# ----- real label geometry: no labelled lane is rejected ---------------------------------------

def _tusimple_labels():
    for path in sorted(glob.glob(str(shared_path("tusimple-geometry") / "label_data_*.json"))):
        for line in open(path, encoding="utf-8"):
            label = json.loads(line)
            rows = np.asarray(label["h_samples"], dtype=np.float64)
            lanes = []
            for xs in label["lanes"]:
                xs = np.asarray(xs, dtype=np.float64)
                if (xs >= 0).sum() >= 2:
                    lanes.append(np.stack([xs[xs >= 0], rows[xs >= 0]], axis=1)[::-1])  # bottom up
            yield label["raw_file"], lanes


def _culane_labels():
    root = shared_path("culane-train")
    for frame in read_culane_list(root / "list.txt", root):
        lanes = [np.asarray(p, dtype=np.float64) for p in frame.lanes if len(p) >= 2]
        yield str(frame.image_path), [p[np.argsort(-p[:, 1], kind="stable")] for p in lanes]


def _projector_from_labels(labels, width: int, height: int) -> GroundProjector:
    """A pinhole camera for a dataset whose camera is not published, estimated from its labels.

    Assumed: a focal length of 1000 px (a 65 degree horizontal view at 1280 px wide; 79 degrees
    at CULane's 1640), the principal point at the image centre, no lens distortion (CULane's
    lens has visible barrel distortion: this is a rougher model there), no roll, and a 1.5 m
    camera height. Estimated: pitch and yaw, the median over frames of the vanishing point of
    the ego pair's lower halves (``mounting_from_straight_lanes``): TuSimple 6.9 deg down, 0.7
    deg left (vanishing point (652, 239)); CULane 4.9 deg up, 3.7 deg right ((755, 381): the
    CULane frames are a crop whose centre is above the horizon). One camera a dataset, as a
    node has: a frame whose pitch differs (TuSimple: 5.8-8.5 deg, 1st-99th percentile) is
    judged with the median. Measured, not tested: with 800 or 1400 px focal lengths no
    labelled lane is dropped either.
    """
    camera = CameraModel(K=[[1000.0, 0, width / 2], [0, 1000.0, height / 2], [0, 0, 1]], dist=np.zeros(5),
                         width=width, height=height)
    pairs = []
    for _, lanes in labels:
        by_slot = dict(zip(assign_slots(lanes, width), lanes, strict=True))
        if L in by_slot and R in by_slot:
            pairs.append(tuple(lane[:max(len(lane) // 2, 2)] for lane in (by_slot[L], by_slot[R])))
    mounting, _ = mounting_from_straight_lanes(camera, pairs)
    return GroundProjector(camera, Mounting(height_m=1.5, pitch_rad=mounting.pitch_rad, yaw_rad=mounting.yaw_rad))


def _check_labels(labels, width: int, projector: GroundProjector) -> tuple[list, int, int]:
    """(dropped lanes with why, lanes checked, lanes judged) over every frame; slots by the labelling rule."""
    dropped, total, judged = [], 0, 0
    for name, lanes in labels:
        if not lanes:
            continue
        slots = assign_slots(lanes, width)
        verdict = check_on_ground([Lane(slot=LaneSlot(s), confidence=1.0, image_points=p)
                                   for s, p in zip(slots, lanes, strict=True)], projector)
        total += len(lanes)
        judged += int(np.isfinite(verdict.heading_deg).sum())
        dropped += [(name, LaneSlot(slots[k]).name, verdict.reasons[k]) for k in np.flatnonzero(~verdict.keep)]
    return dropped, total, judged


def test_no_labelled_lane_of_either_dataset_is_rejected():
    """All 13,795 lanes of the 3,626 official TuSimple training labels and the 445 lanes of the
    120 CULane frames pass; all but 9 TuSimple lanes (far stubs) are judged."""
    projector = _projector_from_labels(_tusimple_labels(), 1280, 720)
    dropped, total, judged = _check_labels(_tusimple_labels(), 1280, projector)
    assert (total, judged) == (13795, 13786)
    assert dropped == []
    projector = _projector_from_labels(_culane_labels(), 1640, 590)
    dropped, total, judged = _check_labels(_culane_labels(), 1640, projector)
    assert (total, judged) == (445, 445)
    assert dropped == []


# ----- what is not a lane on the ground is dropped ---------------------------------------------

EGO = {L: [1.8], R: [-1.8]}


@pytest.mark.parametrize("name, bad", [
    # a stop line 12 m ahead, across the lane
    ("stop line", lambda p: _ground_segment(p, R_R, (12.0, -3.5), (12.3, 3.5))),
    # the kerb of a cross street, slanting across the view
    ("kerb across", lambda p: _ground_segment(p, R_R, (9.0, -6.0), (14.0, 4.0))),
    # a lane drawn up a vehicle's side to the right: a short steep image segment
    ("line on a car", lambda p: Lane(slot=R_R, confidence=0.99, image_points=np.stack(
        [np.full(8, 1100.0), np.linspace(450.0, 380.0, 8)], axis=1))),
    # a line branching off the right boundary at 20 degrees from the bottom of the image (the
    # tolerance grows with the distance to the side, as a pitch error turns lanes there more: a
    # line first seen 6 m to the side may turn 20 degrees)
    ("diverging 20 deg", lambda p: _ground_segment(p, R_R, (5.7, -2.0), (35.0, -2.0 - 29.3 * math.tan(
        math.radians(20.0))))),
    # RIGHT_RIGHT 1 m right of RIGHT, parallel (a doubled line, a kerb beside the edge line)
    ("1 m apart", lambda p: _lane(p, R_R, [-2.8], 0.5)),
])
def test_what_is_no_lane_on_the_ground_is_dropped(name, bad):
    projector = pinhole_projector()
    lanes = [_lane(projector, s, c) for s, c in EGO.items()] + [bad(projector)]
    keep, verdict = _verdict(projector, lanes)
    assert keep == [True, True, False], (name, verdict.reasons)
    # the same lane parallel beside the ego lane, a lane width out, passes
    keep, _ = _verdict(projector, lanes[:2] + [_lane(projector, R_R, [-5.4], 0.99)])
    assert keep == [True, True, True]


def test_a_lane_on_the_wrong_side_is_dropped():
    projector = pinhole_projector()
    keep, verdict = _verdict(projector, [_lane(projector, L, [-1.5]), _lane(projector, R, [-5.1])])
    assert keep == [False, True] and verdict.reasons[0] == "LEFT 1.5 m right of the camera"
    keep, verdict = _verdict(projector, [_lane(projector, L, [5.1]), _lane(projector, R, [1.5])])
    assert keep == [True, False] and verdict.reasons[1] == "RIGHT 1.5 m left of the camera"
    # a lane change: the vehicle over the line, reported as LEFT a little right of the camera
    keep, _ = _verdict(projector, [_lane(projector, L, [-0.3]), _lane(projector, R, [-3.9])])
    assert keep == [True, True]


def test_of_two_lanes_that_disagree_the_less_confident_goes():
    projector = pinhole_projector()
    diverging = [-1.8, -math.tan(math.radians(20.0))]
    keep, verdict = _verdict(projector, [_lane(projector, L, [1.8], 0.9), _lane(projector, R, diverging, 0.8)])
    assert keep == [True, False] and verdict.reasons[1].startswith("heading -20 deg")
    keep, _ = _verdict(projector, [_lane(projector, L, [1.8], 0.7), _lane(projector, R, diverging, 0.8)])
    assert keep == [False, True]
    keep, verdict = _verdict(projector, [_lane(projector, L, [1.0], 0.9), _lane(projector, R, [0.0], 0.6),
                                         _lane(projector, R_R, [-3.6], 0.95)])
    assert keep == [True, False, True] and verdict.reasons[1].endswith("m from LEFT (lanes are 1.25-10.0 m apart)")


def test_a_lane_seen_alone_is_compared_with_the_vehicle_heading():
    projector = pinhole_projector()
    keep, _ = _verdict(projector, [_lane(projector, R, [-1.8, -math.tan(math.radians(10.0))])])
    assert keep == [True]  # a curve or a yawed camera
    keep, verdict = _verdict(projector, [_ground_segment(projector, R, (8.0, -2.0), (14.0, -12.0))])
    assert keep == [False] and "from the vehicle's" in verdict.reasons[0]


def test_lanes_that_meet_at_a_gore_and_far_stubs_pass():
    """An exit: the ramp's line leaves the right boundary at 11 degrees from 0.7 m beside it (as in
    TuSimple clip 0313-2/350); a lane seen only near the horizon is not judged."""
    projector = pinhole_projector()
    ramp = [-2.5, -math.tan(math.radians(11.0))]
    keep, _ = _verdict(projector, [_lane(projector, L, [1.8]), _lane(projector, R, [-1.8]),
                                   _lane(projector, R_R, ramp, 0.5)])
    assert keep == [True, True, True]
    stub = Lane(slot=R_R, confidence=0.99, image_points=[[700.0, 330.0], [705.0, 326.0]])
    keep, verdict = _verdict(projector, [_lane(projector, L, [1.8]), _lane(projector, R, [-1.8]), stub])
    assert keep == [True, True, True] and np.isnan(verdict.heading_deg[2])


def test_parallel_lanes_through_a_strongly_distorted_camera_pass():
    """The Udacity clip's camera (barrel distortion): four parallel lanes on a 300 m curve pass;
    a right boundary diverging 25 degrees among them does not."""
    projector = udacity_projector()
    curve = 1.0 / 600.0  # c2 of a 300 m radius
    lanes = [_lane(projector, slot, [y, 0.02, curve]) for slot, y in ((L_L, 5.4), (L, 1.8), (R, -1.8), (R_R, -5.4))]
    keep, verdict = _verdict(projector, lanes)
    assert keep == [True] * 4 and np.isfinite(verdict.heading_deg).all()
    lanes[2] = _lane(projector, R, [-1.8, -math.tan(math.radians(25.0))], 0.99)
    keep, verdict = _verdict(projector, lanes)
    assert keep == [True, True, False, True] and verdict.reasons[2].startswith("heading -25 deg")


def test_detector_drops_what_the_check_drops_only_with_a_camera(random_weights, monkeypatch):
    projector = pinhole_projector()
    stop = _ground_segment(projector, R_R, (12.0, -3.5), (12.3, 3.5))
    decoded = [_lane(projector, L, [1.8]), _lane(projector, R, [-1.8]), stop]
    detector = Detector.from_weights(random_weights, device="cpu", backend="torch")
    monkeypatch.setattr(detector._decoder, "decode", lambda *args, **kwargs: list(decoded))
    image = np.zeros((720, 1280, 3), np.uint8)
    assert [lane.slot for lane in detector.detect(image).lanes] == [L, R, R_R]
    detector.camera = projector
    lanes = detector.detect(image).lanes
    assert [lane.slot for lane in lanes] == [L, R] and all(lane.ground_points is not None for lane in lanes)
    detector.set_postprocess(ground_check=False)  # the check off
    monkeypatch.setattr(detector._decoder, "decode", lambda *args, **kwargs: list(decoded))
    assert [lane.slot for lane in detector.detect(image).lanes] == [L, R, R_R]
