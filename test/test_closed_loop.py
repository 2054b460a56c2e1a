"""Closed-loop lane keeping: road geometry and its ground truth, the true-camera drive renderer,
the kinematic bicycle, the example planner's controller, and the closed loop through the real
lane_detector node over DDS (benchmarks/closed_loop.py)."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from lanesad_ros.camera import CameraModel, GroundProjector, Mounting
from lanesad_ros.data.synthetic.drive import DriveRenderer, default_drive_camera
from lanesad_ros.data.synthetic.road import Marking, Pose, Road, Segment, highway_course
from lanesad_ros.data.synthetic.vehicle import KinematicBicycle
from lanesad_ros.lanes import LaneSlot
from rosutil import random_domain_id, require_ros_messages

sys.path.insert(0, str(REPO_ROOT / "examples" / "lane_keeping"))
from lane_keeping_controller import CentreEstimator, CentreLine, PurePursuit, fit_boundary  # noqa: E402

CLOSED_LOOP = REPO_ROOT / "benchmarks" / "closed_loop.py"


# --- road geometry and ground truth
def test_arc_closes_into_a_circle_and_clothoid_heading_is_the_curvature_integral():
    r = 100.0
    circle = Road([Segment(2 * math.pi * r, 1 / r)])
    assert np.allclose(circle.xy[-1], (0.0, 0.0), atol=1e-6)
    assert circle.theta[-1] == pytest.approx(2 * math.pi, abs=1e-9)
    assert np.allclose(np.hypot(circle.xy[:, 0], circle.xy[:, 1] - r), r, atol=1e-6)
    spiral = Road([Segment(80.0, 0.0, 1 / 250.0)])
    assert spiral.theta[-1] == pytest.approx(80.0 / 250.0 / 2.0, rel=1e-9)
    assert float(spiral.curvature_at(40.0)) == pytest.approx(0.5 / 250.0)


def test_project_inverts_pose_at_and_ego_lane_measures_offset_heading_curvature():
    road = Road([Segment(50.0), Segment(300.0, 1 / 300.0)], lanes=3, lane_width_m=3.5)
    for s, d in ((20.0, 0.3), (200.0, -2.9), (120.0, 4.0)):
        pose = road.pose_at(s, d)
        assert road.project(pose.x, pose.y) == pytest.approx((s, d), abs=2e-3)
    pose = road.pose_at(200.0, road.lane_centre_offset(0) - 0.4, heading_offset=0.02)
    ego = road.ego_lane(pose)
    assert ego.lane_index == 0
    assert ego.lateral_offset_m == pytest.approx(-0.4, abs=1e-3)
    assert ego.heading_error_rad == pytest.approx(0.02, abs=1e-4)
    assert ego.curvature == pytest.approx(1 / (300.0 - 3.5), rel=1e-6)  # the left lane is 3.5 m inside
    assert ego.width_m == 3.5


def test_boundaries_in_the_vehicle_frame_carry_slots_markings_and_exact_positions():
    road = Road([Segment(200.0)], lanes=3, lane_width_m=3.6)
    pose = Pose(10.0, 0.5, 0.0)  # 0.5 m left of the middle lane's centre, heading along the road
    bounds = road.boundaries(pose, 0.0, 40.0)
    assert [b.slot for b in bounds] == [LaneSlot.LEFT_LEFT, LaneSlot.LEFT, LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT]
    assert [b.marking.kind for b in bounds] == ["solid", "dashed", "dashed", "solid"]
    assert bounds[0].marking.colour == "yellow"
    for b, y in zip(bounds, (4.9, 1.3, -2.3, -5.9), strict=True):
        assert np.allclose(b.points[:, 1], y, atol=1e-9)
        assert b.y_at(np.array([5.0, 30.0])) == pytest.approx([y, y])
        assert b.cubic == pytest.approx([y, 0.0, 0.0, 0.0], abs=1e-9)
    # On an arc the boundary's cubic is the circle to within millimetres up to 30 m.
    arc = Road([Segment(400.0, 1 / 250.0)], lanes=3)
    left = next(b for b in arc.boundaries(arc.pose_at(100.0, 0.0)) if b.slot == LaneSlot.LEFT)
    x = np.linspace(0.0, 30.0, 31)
    assert np.polynomial.polynomial.polyval(x, left.cubic) == pytest.approx(left.y_at(x), abs=0.003)


def test_highway_course_reaches_the_radius_asked_for_and_bad_roads_are_refused():
    road = highway_course(length_m=1500.0, min_radius_m=250.0)
    assert road.length_m >= 1500.0
    assert road.min_radius_m == pytest.approx(250.0)
    with pytest.raises(ValueError, match="markings"):
        Road([Segment(10.0)], lanes=2, markings=[Marking()])
    with pytest.raises(ValueError, match="kind"):
        Marking(kind="dotted")
    with pytest.raises(ValueError, match="length_m"):
        Segment(0.0)


# --- the drive renderer against camera.py
def _paint_at(image: np.ndarray, px: np.ndarray) -> np.ndarray:
    cols, rows = np.round(px[:, 0]).astype(int), np.round(px[:, 1]).astype(int)
    return image[rows, cols].astype(float).mean(axis=1)


@pytest.mark.parametrize("dist", [[0.0] * 5, [-0.25, 0.08, 0.0, 0.0, 0.0]])
def test_markings_are_drawn_where_the_camera_model_projects_the_true_boundaries(dist):
    """Paint lies at the ground truth projected through camera.GroundProjector (with or without
    lens distortion), asphalt a lane-quarter beside it, and the pixels go back onto the truth."""
    camera, mounting = default_drive_camera()
    camera = CameraModel(camera.K, np.array(dist), camera.width, camera.height)
    road = Road([Segment(60.0), Segment(400.0, 1 / 300.0)], lanes=3, markings=[Marking("solid")] * 4)
    renderer = DriveRenderer(road, camera, mounting, seed=3)
    frame = renderer.render(road.pose_at(40.0, road.lane_centre_offset(1) + 0.3, heading_offset=0.01))
    projector = GroundProjector(camera, mounting)
    for b in frame.boundaries:
        pts = b.points[(b.points[:, 0] > 8.0) & (b.points[:, 0] < 30.0)]
        ground = np.column_stack([pts, np.zeros(len(pts))])
        px = projector.ground_to_image(ground)
        inside = (px[:, 0] > 2) & (px[:, 0] < camera.width - 3) & (px[:, 1] < camera.height - 3)
        if inside.sum() < 5:
            continue
        paint = _paint_at(frame.image, px[inside])
        beside = _paint_at(frame.image, projector.ground_to_image(ground[inside] + (0.0, 0.9, 0.0)))
        assert np.median(paint) > 200 and np.median(beside) < 160, b.slot
        back = projector.image_to_ground(px[inside])
        assert np.allclose(back[:, :2], pts[inside], atol=1e-4)


def test_dashes_are_painted_at_their_stations_and_gaps_left_bare():
    road = Road([Segment(300.0)], lanes=2, markings=[Marking("solid"), Marking("dashed", dash_m=3.0, gap_m=9.0),
                                                        Marking("solid")])
    renderer = DriveRenderer(road, seed=1)
    pose = road.pose_at(0.0, road.lane_centre_offset(1))
    frame = renderer.render(pose)
    # Dashes on the centre boundary cover stations [12 k, 12 k + 3): the vehicle is at station 0.
    paint = renderer.projector.ground_to_image(np.array([[12.0 * k + 1.5, pose.to_vehicle(
        road.points(np.array([12.0 * k + 1.5]), 0.0))[0, 1], 0.0] for k in (1, 2)]))
    gap = renderer.projector.ground_to_image(np.array([[12.0 * k + 7.5, pose.to_vehicle(
        road.points(np.array([12.0 * k + 7.5]), 0.0))[0, 1], 0.0] for k in (1, 2)]))
    assert (_paint_at(frame.image, paint) > 200).all()
    assert (_paint_at(frame.image, gap) < 160).all()


def test_renderer_is_a_pure_function_of_road_seed_and_pose():
    road = highway_course(length_m=600.0)
    pose = road.pose_at(250.0, 0.2)
    a = DriveRenderer(road, seed=5).render(pose).image
    b = DriveRenderer(road, seed=5).render(pose).image
    assert np.array_equal(a, b)
    assert not np.array_equal(a, DriveRenderer(road, seed=6).render(pose).image)
    with pytest.raises(ValueError, match="both camera and mounting"):
        DriveRenderer(road, mounting=Mounting(height_m=1.5))


# --- vehicle and controller
def test_bicycle_drives_exact_arcs_whatever_the_step():
    delta = 0.05
    radius = 2.8 / math.tan(delta)
    one = KinematicBicycle(Pose(0.0, 0.0, 0.0), 20.0)
    many = KinematicBicycle(Pose(0.0, 0.0, 0.0), 20.0)
    one.step(delta, 2.0)
    for _ in range(100):
        many.step(delta, 0.02)
    assert (one.pose.x, one.pose.y, one.pose.heading) == pytest.approx((many.pose.x, many.pose.y, many.pose.heading))
    assert math.hypot(one.pose.x, one.pose.y - radius) == pytest.approx(radius)
    assert one.pose.heading == pytest.approx(40.0 / radius)
    clipped = KinematicBicycle(Pose(0.0, 0.0, 0.0), 10.0, max_steer_rad=0.1)
    clipped.step(1.0, 1.0)
    assert clipped.pose.heading == pytest.approx(10.0 * math.tan(0.1) / 2.8)


def test_pure_pursuit_steers_a_circle_exactly_and_centre_comes_from_either_boundary():
    pursuit = PurePursuit(wheelbase_m=2.8, lookahead_time_s=1.0)
    r = 250.0
    x = np.linspace(0.0, 40.0, 41)
    # Lane centre on a circle of radius r around (0, r): boundaries 1.8 m either side.
    left = np.column_stack([x, r - np.sqrt((r - 1.8) ** 2 - x**2)])
    right = np.column_stack([x, r - np.sqrt((r + 1.8) ** 2 - x**2)])
    centre = CentreEstimator().update({1: left, 2: right})
    assert centre.source == "both" and centre.width_m == pytest.approx(3.6, abs=0.01)
    assert pursuit.steer(centre, 20.0) == pytest.approx(math.atan(2.8 / r), rel=0.01)
    only_right = CentreEstimator().update({2: right})
    assert only_right.source == "right" and only_right.y_at(0.0) == pytest.approx(0.0, abs=0.01)
    assert CentreEstimator().update({1: left[:2]}) is None
    assert CentreEstimator().update({1: left, 2: left + (0.0, 0.5)}) is None  # 0.5 m apart: not our lane
    model = CentreLine.from_ego_lane(lateral_offset_m=0.3, heading_error_rad=0.0, curvature=0.0, width_m=3.6)
    assert pursuit.steer(model, 20.0) < 0  # 0.3 m left of the centre: steer right
    assert fit_boundary(np.zeros((3, 2))) is None
    with pytest.raises(ValueError, match="shape"):
        fit_boundary(np.zeros(6))


def test_bicycle_and_planner_keep_the_lane_on_a_known_road_with_ground_truth_lanes():
    """60 s at 20 m/s over curves down to R 250 m, 20 fps, each command acting 40 ms late:
    within 0.5 m of the lane centre all the way, as the done-when of the closed loop asks."""
    road = highway_course(length_m=1500.0, min_radius_m=250.0)
    car = KinematicBicycle(road.pose_at(0.0, road.lane_centre_offset(1) + 0.3), 20.0)
    estimator, pursuit = CentreEstimator(), PurePursuit()
    dt, delay, steer, s, errors = 0.05, 0.04, 0.0, 0.0, []
    for _ in range(1200):
        ego = road.ego_lane(car.pose, s)
        s = ego.s_m
        errors.append(road.project(car.pose.x, car.pose.y, s)[1] - road.lane_centre_offset(1))
        seen = {int(b.slot): b.points[b.points[:, 0] > 5.0] for b in road.boundaries(car.pose, 0.0, 60.0, ego=ego)}
        new = pursuit.steer(estimator.update(seen), car.speed_mps)
        car.step(steer, delay)
        car.step(new, dt - delay)
        steer = new
    errors = np.abs(errors)
    assert s > 1150.0  # drove the whole minute, through both R 250 m curves
    assert errors.max() <= 0.31 and errors[100:].max() < 0.1


# --- the closed loop through the real node over DDS
def _closed_loop(tmp_path, *args: str, timeout: float = 900.0) -> tuple[subprocess.CompletedProcess, dict]:
    """Run benchmarks/closed_loop.py. The tests give it a fixed actuation delay of one frame period:
    the control then does not depend on how loaded the machine is (latencies are still measured)."""
    require_ros_messages()
    env = dict(os.environ, ROS_DOMAIN_ID=str(random_domain_id()), FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA")
    out = tmp_path / "closed_loop"
    run = subprocess.run([sys.executable, str(CLOSED_LOOP), "--out", str(out), *args], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for name in ("trajectory.png", "lateral_error.png", "trajectory.csv"):
        assert (out / name).stat().st_size > 0
    return run, summary


def test_closed_loop_through_the_detector_node_over_dds(tmp_path):
    """A few seconds of driving: every frame rendered, published to the spawned lane_detector,
    its lanes turned into commands by the spawned lane_keeper, the car kept in its lane."""
    # An explicit backend: no background measurement of the candidates (minutes on a loaded machine).
    run, summary = _closed_loop(tmp_path, "--duration", "2", "--rate", "10", "--startup-timeout", "600",
                                "--settle-timeout", "60", "--answer-timeout", "60", "--actuation-delay", "0.1",
                                "--node-param", "backend:=onnxruntime")
    assert summary["mode"] == "detector"
    for key in ("duration_s", "speed_mps", "min_radius_m", "rms_lateral_error_m", "max_lateral_error_m"):
        assert key in summary
    assert summary["frames"] == 20 and summary["frames_answered"] == 20
    assert summary["detector_latency_ms"]["n"] == 20 and summary["inference_latency_ms"]["median"] > 0
    assert summary["centre_estimate_error"]["offset_m"]["n"] > 0
    assert summary["within_limit"] and run.returncode == 0
    assert summary["node_exit_codes"][-1] == 0  # the planner's; the detector's own shutdown has its own tests


def test_closed_loop_with_ground_truth_lanes_measures_the_error_and_corrects_it(tmp_path):
    """Started 0.4 m off the centre with exact lanes: the error reported starts at 0.4 m and the
    planner brings the car back; a limit under the start offset fails the run (exit status 1)."""
    run, summary = _closed_loop(tmp_path, "--ground-truth-lanes", "--duration", "4", "--rate", "10",
                                "--start-offset", "0.4", "--limit", "0.3", "--actuation-delay", "0.1")
    assert summary["mode"] == "ground_truth_lanes"
    assert summary["max_lateral_error_m"] == pytest.approx(0.4, abs=0.01)
    assert not summary["within_limit"] and run.returncode == 1
    with open(tmp_path / "closed_loop" / "trajectory.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40
    assert abs(float(rows[-1]["lateral_error_m"])) < 0.1
