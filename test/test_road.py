"""lanesad_ros.road: ground cubics with their uncertainty, marking type and colour, the filtered ego lane."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from road_scenes import colour_cast, detections, lane_pixels, paint_road, pinhole_projector, udacity_projector

from lanesad_ros.lanes import LaneSlot
from lanesad_ros.road import (
    BoundaryFit,
    BoundaryFitConfig,
    EgoLaneFilter,
    MarkingColor,
    MarkingType,
    Motion,
    OdometryGate,
    RoadModelStage,
    fit_boundary,
    measure_marking,
)

# ----- ground cubic --------------------------------------------------------------------------

LANES = {"straight": [1.8, 0.0, 0.0, 0.0], "offset and heading": [-1.9, -0.03, 0.0, 0.0],
         "curve R 250 m": [1.7, 0.01, 1 / 500, 0.0], "clothoid": [-2.0, 0.02, -4e-4, 2e-6]}


def test_keep_all_keeps_each_pixel_on_its_row():
    projector = pinhole_projector()
    pixels = np.array([[640.0, 700.0], [640.0, 100.0], [600.0, 500.0]])  # the middle one is sky
    kept = projector.image_to_ground(pixels, keep_all=True)
    assert kept.shape == (3, 3) and np.isnan(kept[1]).all()
    np.testing.assert_allclose(kept[[0, 2]], projector.image_to_ground(pixels))


@pytest.mark.parametrize("camera", ["udacity", "pinhole"])
@pytest.mark.parametrize("lane", LANES)
def test_fit_recovers_analytic_lanes(camera, lane):
    """Known ground lanes, projected as a detector reports them (through the camera model, lens
    distortion included), come back within 2 cm up to 30 m ahead, and the range is where they were seen."""
    projector = udacity_projector() if camera == "udacity" else pinhole_projector()
    truth = LANES[lane]
    fit = fit_boundary(lane_pixels(projector, truth), projector)
    x = np.arange(5.0, 30.1, 1.0)
    error = np.abs(fit.y(x) - np.polynomial.polynomial.polyval(x, truth))
    assert error.max() < 0.02, (lane, error.max())
    assert fit.x_min < 8.0 and fit.x_max > 40.0


def test_lateral_std_matches_pixel_noise_and_grows_with_distance():
    """Monte Carlo with 1.5 px of independent column noise: the reported std (pitch term off) is
    neither overconfident nor far too loose, at every distance, and grows from 10 m outwards."""
    projector = udacity_projector()
    config = BoundaryFitConfig(pitch_std_rad=0.0)
    truth = LANES["curve R 250 m"]
    clean = lane_pixels(projector, truth)
    rng = np.random.default_rng(1)
    x = np.array([10.0, 20.0, 30.0])
    errors, stds = [], []
    for _ in range(150):
        noisy = clean + np.column_stack([rng.normal(0, 1.5, len(clean)), np.zeros(len(clean))])
        fit = fit_boundary(noisy, projector, config)
        errors.append(fit.y(x) - np.polynomial.polynomial.polyval(x, truth))
        stds.append(fit.lateral_std(x))
    empirical, reported = np.sqrt(np.mean(np.square(errors), axis=0)), np.mean(stds, axis=0)
    ratio = reported / empirical
    assert np.all(ratio > 0.9) and np.all(ratio < 2.5), ratio  # correlated-points allowance: >= 1 here
    assert np.all(np.diff(reported) > 0)


def test_pitch_uncertainty_widens_the_far_range():
    """The pitch term is what one sigma of pitch does to the fit: a refit with the camera pitched by
    that much moves y(30 m) by about the added standard deviation."""
    projector = udacity_projector()
    pixels = lane_pixels(projector, LANES["straight"])
    sigma = 0.004
    without = fit_boundary(pixels, projector, BoundaryFitConfig(pitch_std_rad=0.0))
    with_pitch = fit_boundary(pixels, projector, BoundaryFitConfig(pitch_std_rad=sigma))
    added = math.sqrt(with_pitch.lateral_std(30.0)[0] ** 2 - without.lateral_std(30.0)[0] ** 2)
    from lanesad_ros.camera import GroundProjector

    pitched = GroundProjector(projector.camera, replace(projector.mounting, pitch_rad=projector.mounting.pitch_rad
                                                        + sigma))
    moved = fit_boundary(pixels, pitched, BoundaryFitConfig(pitch_std_rad=0.0))
    assert added == pytest.approx(abs(moved.y(30.0) - without.y(30.0)), rel=0.1)
    assert with_pitch.lateral_std(30.0)[0] > 2 * with_pitch.lateral_std(8.0)[0]


def test_too_few_road_points_give_no_fit():
    projector = pinhole_projector()
    assert fit_boundary(np.array([[600.0, 700.0], [610.0, 650.0], [620.0, 600.0]]), projector) is None
    sky = np.stack([np.linspace(500, 700, 10), np.linspace(10, 200, 10)], axis=1)
    assert fit_boundary(sky, projector) is None


def test_std_samples_lie_inside_the_range():
    fit = fit_boundary(lane_pixels(pinhole_projector(), LANES["straight"]), pinhole_projector())
    xs, std = fit.std_samples(5.0)
    assert xs[0] == fit.x_min and xs[-1] == fit.x_max and np.all(np.diff(xs) > 0)
    assert np.all(xs[1:-1] % 5.0 == 0) and np.all(std > 0)


# ----- marking type and colour ---------------------------------------------------------------

EXPECTED_TYPE = {"solid": MarkingType.SOLID, "dashed": MarkingType.DASHED, "double": MarkingType.DOUBLE,
                 "dots": MarkingType.BOTTS_DOTS}
PAINTED = [("solid", "white"), ("solid", "yellow"), ("dashed", "white"), ("dashed", "yellow"),
           ("double", "yellow"), ("double", "white"), ("dots", "white")]


@pytest.mark.parametrize("camera", ["pinhole", "udacity"])
@pytest.mark.parametrize("look", ["day", "dusk with a warm cast", "worn paint"])
@pytest.mark.parametrize("kind,colour", PAINTED)
def test_marking_type_and_colour_on_painted_roads(camera, look, kind, colour):
    projector = udacity_projector() if camera == "udacity" else pinhole_projector()
    alpha = 0.45 if look == "worn paint" else 1.0
    right = 1.8 if kind != "double" else 1.95
    img = paint_road(projector, [{"y": right, "kind": kind, "colour": colour, "alpha": alpha, "phase": 1.0},
                                 {"y": -1.8, "kind": "dashed", "colour": "white"}], seed=3)
    if look.startswith("dusk"):
        img = colour_cast(img)
    fit = fit_boundary(lane_pixels(projector, [right, 0.0, 0.0, 0.0]), projector)
    marking = measure_marking(img, fit, projector)
    assert marking.type == EXPECTED_TYPE[kind], marking
    assert marking.color == (MarkingColor.YELLOW if colour == "yellow" else MarkingColor.WHITE), marking
    assert marking.type_confidence > 0 and marking.color_confidence > 0


@pytest.mark.parametrize("phase", np.arange(0.0, 12.0, 1.5))
def test_dashes_are_dashed_wherever_they_fall_in_the_view(phase):
    projector = udacity_projector()
    img = paint_road(projector, [{"y": -1.8, "kind": "dashed", "colour": "white", "phase": float(phase)}], seed=4)
    fit = fit_boundary(lane_pixels(projector, [-1.8, 0.0, 0.0, 0.0]), projector)
    assert measure_marking(img, fit, projector).type == MarkingType.DASHED


def test_no_paint_is_unknown_and_a_boundary_out_of_view_is_unmeasured():
    projector = pinhole_projector()
    img = paint_road(projector, [], seed=5)
    fit = fit_boundary(lane_pixels(projector, [1.8, 0.0, 0.0, 0.0]), projector)
    assert measure_marking(img, fit, projector).type == MarkingType.UNKNOWN
    far = replace(fit, x_min=60.0, x_max=80.0)  # where a metre spans too few rows
    unmeasured = measure_marking(img, far, projector)
    assert unmeasured.type == MarkingType.UNKNOWN and unmeasured.length_m == 0.0


def test_markings_of_synthetic_drives():
    """The true-camera drive renderer (known markings per boundary): every boundary it drew in view,
    fitted from its pixels as a detector reports them, gets its type and colour (>= 95 %)."""
    from lanesad_ros.data.synthetic.drive import DriveRenderer
    from lanesad_ros.data.synthetic.road import highway_course

    road = highway_course(1500.0)
    right = wrong = 0
    for seed in (0, 1):
        renderer = DriveRenderer(road, seed=seed)
        for s in np.arange(40.0, 1400.0, 90.0):
            frame = renderer.render(road.pose_at(float(s), road.lane_centre_offset(1) + 0.4 * math.sin(s), 0.01))
            for truth in frame.boundaries:
                ground = np.column_stack([truth.points, np.zeros(len(truth.points))])
                pixels = renderer.projector.ground_to_image(ground)
                ok = np.all(np.isfinite(pixels), axis=1) & (pixels[:, 0] >= 0) & (pixels[:, 0] < 1280) \
                    & (pixels[:, 1] < 720)
                pixels = pixels[ok]
                if len(pixels) < 8:
                    continue
                rows = np.arange(pixels[:, 1].max(), pixels[:, 1].min(), -10.0)  # where it is in view
                order = np.argsort(pixels[:, 1])
                sampled = np.column_stack([np.interp(rows, pixels[order, 1], pixels[order, 0]), rows])
                fit = fit_boundary(sampled, renderer.projector)
                if fit is None:
                    continue
                marking = measure_marking(frame.image, fit, renderer.projector)
                if marking.length_m == 0.0:
                    continue  # not near enough in view to be judged
                expected = (EXPECTED_TYPE[truth.marking.kind],
                            MarkingColor.YELLOW if truth.marking.colour == "yellow" else MarkingColor.WHITE)
                if (marking.type, marking.color) == expected:
                    right += 1
                else:
                    wrong += 1
    assert right + wrong >= 80
    assert right / (right + wrong) >= 0.95, (right, wrong)


# ----- ego lane filter -----------------------------------------------------------------------

def boundary(c0: float, c1: float = 0.0, c2: float = 0.0, std: float = 0.03) -> BoundaryFit:
    """A measured boundary with a plain covariance (c0 std ``std``, c1 std std / 10, ...)."""
    cov = np.diag(np.square([std, std / 10, std / 1000, std / 1e5]))
    return BoundaryFit(coef=np.array([c0, c1, c2, 0.0]), covariance=cov, x_min=5.0, x_max=50.0, pixel_std=1.5,
                       n_points=40)


def lane_fits(offset: float, heading: float = 0.0, curvature: float = 0.0, width: float = 3.6):
    """LEFT and RIGHT boundaries for a vehicle ``offset`` m left of the centre, ``heading`` rad left of it."""
    y_c, slope = -offset, -math.tan(heading)
    half = width / 2 * math.sqrt(1 + slope * slope)
    return boundary(y_c + half, slope, curvature / 2), boundary(y_c - half, slope, curvature / 2)


def test_filter_reports_the_documented_signs_and_units():
    ego = EgoLaneFilter()
    for k in range(30):
        estimate = ego.update(k / 25, *lane_fits(0.3, math.radians(1.0), 1 / 400))
    assert estimate.valid and not estimate.predicted and estimate.measurement_age == 0.0
    assert estimate.lateral_offset == pytest.approx(0.3, abs=0.01)
    assert math.degrees(estimate.heading_error) == pytest.approx(1.0, abs=0.05)
    assert estimate.curvature == pytest.approx(1 / 400, rel=0.05)
    assert estimate.lane_width == pytest.approx(3.6, abs=0.01)
    assert np.all(estimate.variances > 0) and np.allclose(estimate.covariance, estimate.covariance.T)


def test_dropouts_are_predicted_flagged_and_expire():
    ego = EgoLaneFilter()
    for k in range(25):
        ego.update(k / 25, *lane_fits(0.2))
    last = 24 / 25
    variances = []
    for k in range(25, 50):
        estimate = ego.update(k / 25, None, None)
        age = k / 25 - last
        if age <= ego.config.max_prediction_s:
            assert estimate.valid and estimate.predicted and estimate.measurement_age == pytest.approx(age)
            assert estimate.lateral_offset == pytest.approx(0.2, abs=0.02)
            variances.append(estimate.variances[0])
        else:
            assert not estimate.valid
    assert np.all(np.diff(variances) > 0), "uncertainty grows while predicting"
    again = ego.update(2.5, *lane_fits(-0.4))
    assert again.valid and not again.predicted and again.lateral_offset == pytest.approx(-0.4, abs=0.05)


def test_one_boundary_keeps_the_lane_with_its_width_from_memory():
    ego = EgoLaneFilter()
    for k in range(25):
        ego.update(k / 25, *lane_fits(0.0, width=3.4))
    for k in range(25, 40):
        left, _ = lane_fits(0.5, width=3.4)
        estimate = ego.update(k / 25, left, None)
    assert not estimate.predicted
    assert estimate.lateral_offset == pytest.approx(0.5, abs=0.05)
    assert estimate.lane_width == pytest.approx(3.4, abs=0.05)


@pytest.mark.parametrize("with_odometry", [True, False])
def test_odometry_carries_the_lane_through_a_dropout(with_odometry):
    """20 m/s with a 2 degree heading error on a straight road: the vehicle drifts left 0.7 m/s.
    Predicted with odometry through half a second without lanes, the offset stays within 5 cm;
    without motion it stands still (the truth moves on 0.35 m) and only its variance says so."""
    ego = EgoLaneFilter()
    speed, heading, dt = 20.0, math.radians(2.0), 1 / 25
    motion = Motion(speed, 0.0) if with_odometry else None
    offset = lambda t: -1.0 + speed * math.sin(heading) * t  # noqa: E731
    for k in range(40):
        ego.update(k * dt, *lane_fits(offset(k * dt), heading), motion)
    for k in range(40, 53):
        estimate = ego.update(k * dt, None, None, motion)
    error = abs(estimate.lateral_offset - offset(52 * dt))
    if with_odometry:
        assert error < 0.05
    else:
        assert error > 0.25 and math.sqrt(estimate.variances[0]) > error / 2


def test_odometry_on_a_curve_keeps_the_lane_still_in_the_vehicle_frame():
    """Following a 300 m curve at 25 m/s (yaw rate v / R): the lane does not move in the vehicle frame."""
    ego = EgoLaneFilter()
    motion = Motion(25.0, 25.0 / 300.0)
    for k in range(30):
        ego.update(k / 25, *lane_fits(0.1, 0.0, 1 / 300), motion)
    for k in range(30, 45):
        estimate = ego.update(k / 25, None, None, motion)
    assert estimate.lateral_offset == pytest.approx(0.1, abs=0.03)
    assert abs(math.degrees(estimate.heading_error)) < 0.2


@pytest.mark.parametrize("direction", [-1, +1])
def test_lane_change_moves_the_state_to_the_new_lane_once(direction):
    """Drifting 1 m/s into the lane on the right (-1) or left (+1): the detector's LEFT/RIGHT swap
    as the vehicle crosses the line; the filter reports the change once, on that frame, and then
    the offset from the new lane's centre, with the width kept."""
    ego = EgoLaneFilter()
    width, dt = 3.6, 1 / 25
    changes, errors = [], []
    for k in range(150):
        t = k * dt
        position = direction * min(max(0.0, t - 1.0), 3.6)  # vehicle y across the road, from the old centre
        lane = round(position / width)  # 0: the old lane, +-1: the new one
        offset = position - lane * width  # from the centre of the lane it is in now
        estimate = ego.update(t, *lane_fits(offset, direction * math.radians(1.0) if 1.0 < t < 4.6 else 0.0))
        changes.append(estimate.lane_change)
        if k > 10:
            errors.append(abs(estimate.lateral_offset - offset))
    assert [c for c in changes if c] == [direction] and ego.lane_changes == 1 and ego.restarts == 0
    assert max(errors) < 0.15
    assert estimate.lane_width == pytest.approx(width, abs=0.05)


def test_a_jump_that_is_no_lane_change_restarts_and_time_going_back_resets():
    ego = EgoLaneFilter()
    for k in range(25):
        ego.update(k / 25, *lane_fits(0.0))
    jumped = ego.update(1.0, *lane_fits(1.5))
    assert ego.restarts == 1 and jumped.lane_change == 0 and jumped.lateral_offset == pytest.approx(1.5, abs=0.05)
    back = ego.update(0.2, *lane_fits(-0.3))
    assert ego.resets == 1 and back.valid and back.lateral_offset == pytest.approx(-0.3, abs=0.05)


def test_stage_restarts_on_an_image_size_change():
    """A camera that switches resolution: nothing of the old geometry is carried into the new one."""
    stage = RoadModelStage()
    big, small = pinhole_projector(1280, 720), pinhole_projector(640, 360)
    lanes = {LaneSlot.LEFT: [1.6, 0.0, 0.0, 0.0], LaneSlot.RIGHT: [-2.0, 0.0, 0.0, 0.0]}
    img = np.full((720, 1280, 3), 100, np.uint8)
    for k in range(10):
        model = stage.update(detections(big, lanes), img, big, k / 25)
    assert model.ego.valid and model.ego.lateral_offset == pytest.approx(0.2, abs=0.02)
    assert stage.ego.resets == 0
    moved = {LaneSlot.LEFT: [2.3, 0.0, 0.0, 0.0], LaneSlot.RIGHT: [-1.3, 0.0, 0.0, 0.0]}
    model = stage.update(detections(small, moved), img[::2, ::2], small, 10 / 25)
    assert stage.ego.resets == 1 and model.ego.lane_change == 0
    assert model.ego.lateral_offset == pytest.approx(-0.5, abs=0.05)  # the new measurement alone
    assert [b.slot for b in model.boundaries] == [LaneSlot.LEFT, LaneSlot.RIGHT]


def test_stage_without_a_camera_model_has_no_ground_model():
    stage = RoadModelStage()
    projector = pinhole_projector()
    model = stage.update(detections(projector, {LaneSlot.LEFT: [1.8, 0, 0, 0]}), np.zeros((720, 1280, 3), np.uint8),
                         None, 0.0)
    assert model.boundaries == [] and not model.ego.valid


def test_stage_marking_votes_follow_a_lane_change():
    """Solid yellow left edge, dashed white between the lanes, solid white right edge; the vehicle
    drifts from the left lane into the right one. On the frame of the change the new LEFT boundary
    is the old RIGHT one and reports its votes (dashed white), not the old LEFT's (solid yellow)."""
    projector = pinhole_projector()
    stage = RoadModelStage(markings_per_frame=0)  # every boundary every frame: the votes of a known count
    road = [(1.8, "solid", "yellow"), (-1.8, "dashed", "white"), (-5.4, "solid", "white")]
    positions = [0.0] * 6 + [-0.3 * k for k in range(1, 13)]  # vehicle y on the road, drifting right
    for k, p in enumerate(positions):
        seen = [(y - p, kind, colour) for y, kind, colour in road]
        left = sorted((b for b in seen if b[0] > 0), key=lambda b: b[0])
        right = sorted((b for b in seen if b[0] <= 0), key=lambda b: -b[0])
        lanes = {slot: [b[0], 0, 0, 0] for slot, b in zip((LaneSlot.LEFT, LaneSlot.LEFT_LEFT), left, strict=False)}
        lanes.update({slot: [b[0], 0, 0, 0] for slot, b in zip((LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT), right,
                                                                strict=False)})
        img = paint_road(projector, [{"y": y, "kind": kind, "colour": colour} for y, kind, colour in seen], seed=k)
        model = stage.update(detections(projector, lanes), img, projector, k / 25)
        if model.ego.lane_change:
            break
    assert model.ego.lane_change == -1
    kinds = {b.slot: (b.marking.type, b.marking.color) for b in model.boundaries}
    assert kinds[LaneSlot.LEFT] == (MarkingType.DASHED, MarkingColor.WHITE)
    assert stage._votes[LaneSlot.LEFT].type[MarkingType.DASHED] > 2.0  # carried over, not one frame's vote


def test_stage_measures_the_stalest_markings_within_its_budget(monkeypatch):
    """One marking a frame over four boundaries: LEFT, RIGHT, LEFT_LEFT, RIGHT_RIGHT in turn (never
    measured first, then the one measured longest ago); in between each slot reports its votes so
    far, so after one round every boundary has its type and colour on every frame."""
    import lanesad_ros.road.model as road_model

    calls = []
    real = road_model.measure_marking
    monkeypatch.setattr(road_model, "measure_marking", lambda bgr, fit, *a: calls.append(fit) or real(bgr, fit, *a))
    projector = pinhole_projector()
    road = [(5.4, "dashed", "white"), (1.8, "solid", "yellow"), (-1.8, "dashed", "white"), (-5.4, "solid", "white")]
    slots = (LaneSlot.LEFT_LEFT, LaneSlot.LEFT, LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT)
    lanes = {slot: [y, 0, 0, 0] for slot, (y, _, _) in zip(slots, road, strict=True)}
    img = paint_road(projector, [{"y": y, "kind": kind, "colour": colour} for y, kind, colour in road])
    stage = RoadModelStage(markings_per_frame=1)
    order = []
    for k in range(8):
        model = stage.update(detections(projector, lanes), img, projector, k / 20)
        assert len(calls) == k + 1  # one measurement per frame
        fitted = {id(b.fit): b.slot for b in model.boundaries}
        order.append(fitted[id(calls[-1])])
        if k >= 3:
            kinds = {b.slot: (b.marking.type, b.marking.color) for b in model.boundaries}
            assert kinds == {LaneSlot.LEFT_LEFT: (MarkingType.DASHED, MarkingColor.WHITE),
                             LaneSlot.LEFT: (MarkingType.SOLID, MarkingColor.YELLOW),
                             LaneSlot.RIGHT: (MarkingType.DASHED, MarkingColor.WHITE),
                             LaneSlot.RIGHT_RIGHT: (MarkingType.SOLID, MarkingColor.WHITE)}, k
            assert all(b.marking.length_m > 0 for b in model.boundaries)  # the last measurement's evidence
    assert order == [LaneSlot.LEFT, LaneSlot.RIGHT, LaneSlot.LEFT_LEFT, LaneSlot.RIGHT_RIGHT] * 2
    assert RoadModelStage(markings_per_frame=0).update(detections(projector, lanes), img, projector, 0.0) \
        and len(calls) == 8 + 4  # 0: every boundary every frame
    with pytest.raises(ValueError, match="markings_per_frame"):
        RoadModelStage(markings_per_frame=-1)


# ----- odometry gate -------------------------------------------------------------------------

def test_odometry_gate_uses_only_recent_finite_plausible_motion():
    gate = OdometryGate(max_age_s=0.5)
    assert gate.motion_for(10.0) == (None, "none") and "no odometry" in gate.describe(10.0, "none")
    gate.put(10.0, 20.0, 0.05)
    assert gate.motion_for(10.3) == (Motion(20.0, 0.05), None)
    assert gate.motion_for(10.6)[1] == "stale" and gate.motion_for(9.4)[1] == "stale"
    assert "0.600 s apart, limit 0.500 s" in gate.describe(10.6, "stale")
    gate.put(10.6, math.nan, 0.0)
    assert gate.motion_for(10.6) == (None, "not_finite") and "nan" in gate.describe(10.6, "not_finite")
    gate.put(10.6, 20.0, math.inf)
    assert gate.motion_for(10.6) == (None, "not_finite")
    gate.put(10.6, 400.0, 0.0)
    assert gate.motion_for(10.6) == (None, "implausible")
    with pytest.raises(ValueError, match="max_age_s must be > 0"):
        OdometryGate(0.0)
