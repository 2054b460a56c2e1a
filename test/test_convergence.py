"""Lanes converge to one vanishing region and run up the image, steeply next to the camera: real
label geometry of both datasets passes, stop lines, crossings, kerbs across the view, the horizon
and vehicle edges do not."""
from __future__ import annotations

import glob
import json

import numpy as np
import pytest

from conftest import shared_path
from lanesad_ros.convergence import MAX_INNER_SLOPE, MAX_SLOPE, converging, near_field_lines, steep_inner, trim_across
from lanesad_ros.data.culane import read_culane_list
from lanesad_ros.postprocess import PostprocessConfig
from lanesad_ros.slots import bottom_columns, resolve_slots

ROWS = np.arange(160, 720, 10, dtype=np.float64)  # TuSimple h_samples
W, H = 1280, 720


def lane(x_bottom: float, x_top: float, top: float = 260.0, bottom: float = 710.0) -> np.ndarray:
    """A straight lane on the TuSimple row grid, NaN outside [top, bottom]."""
    x = np.interp(ROWS, [top, bottom], [x_top, x_bottom])
    return np.where((ROWS >= top) & (ROWS <= bottom), x, np.nan)


def to_vp(x_bottom: float, top: float = 260.0, bottom: float = 710.0) -> np.ndarray:
    """A straight lane through the vanishing point (640, 250) (TuSimple horizon ~0.35 h) that is
    at ``x_bottom`` on row 710, seen from ``top`` to ``bottom``."""
    x_top = 640 + (x_bottom - 640) * (top - 250) / 460
    x_low = 640 + (x_bottom - 640) * (bottom - 250) / 460
    return lane(x_low, x_top, top, bottom)


EGO_LEFT, EGO_RIGHT, RIGHT_RIGHT = to_vp(300), to_vp(1000), to_vp(1900, top=270, bottom=480)


def _frame(*extra: np.ndarray) -> np.ndarray:
    return np.stack([EGO_LEFT, EGO_RIGHT, RIGHT_RIGHT, *extra])


def test_real_lanes_pass():
    assert converging(_frame(), ROWS, np.ones(3), W, H).all()


@pytest.mark.parametrize("name, bad", [
    ("stop line", lane(300, 900, top=640, bottom=660)),
    ("horizon", lane(0, 1280, top=250, bottom=270)),
    # the kerb of a cross street at an intersection, across the view ahead
    ("kerb across", lane(200, 1100, top=430, bottom=450)),
    # a lane-like line on the left whose direction points 45 degrees off the vanishing point
    ("pointing elsewhere", lane(100, 150, top=400, bottom=700)),
    # a vehicle's side edge on the right, leaning the wrong way for a lane on that side
    ("vehicle edge", lane(1000, 1150, top=450, bottom=600)),
])
def test_what_is_not_a_lane_is_dropped(name, bad):
    keep = converging(_frame(bad), ROWS, np.array([0.9, 0.9, 0.9, 0.99]), W, H)
    assert keep.tolist() == [True, True, True, False], name


def test_a_lane_that_sweeps_across_the_view_keeps_its_near_part():
    sweep = EGO_LEFT.copy()
    far = ROWS < 400
    bend = far & (ROWS >= 300)
    sweep[bend] = EGO_LEFT[ROWS == 400] + (400 - ROWS[bend]) * 20  # turns flat to the right (along cars)
    sweep[ROWS < 300] = np.nan
    cut = trim_across(sweep[None], ROWS, H)[0]
    assert np.isfinite(cut[ROWS >= 400]).all() and not np.isfinite(cut[ROWS < 400]).any()
    np.testing.assert_array_equal(trim_across(EGO_LEFT[None], ROWS, H)[0], EGO_LEFT)


def test_resolve_slots_drops_the_stop_line_before_it_takes_a_slot():
    stop = lane(500, 800, top=690, bottom=710)
    x, slots = resolve_slots(np.stack([EGO_LEFT, stop, EGO_RIGHT]), ROWS, np.array([0.9, 0.99, 0.9]), W)
    assert slots.tolist() == [1, 255, 2] and not np.isfinite(x[1]).any()


def _label_rows(points: np.ndarray, rows: np.ndarray) -> np.ndarray:
    p = points[np.argsort(points[:, 1])]
    inside = (rows >= p[0, 1]) & (rows <= p[-1, 1])
    return np.where(inside, np.interp(rows, p[:, 1], p[:, 0]), np.nan)


def _steep_inner(x: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """Rule 3 as ``resolve_slots`` applies it (same bottom positions, image centre as camera column)."""
    return steep_inner(near_field_lines(x, rows)[:, 0], bottom_columns(x, rows), width / 2.0)


def test_no_labelled_lane_of_either_dataset_is_rejected():
    """All 13,795 lanes of the 3,626 official TuSimple training labels and the 445 lanes of the
    120 CULane frames: no lane dropped (rules 1-3); one TuSimple lane (clip
    0531/1492635095600000079, which swings 370 px sideways over its top 60 rows) loses its 2
    topmost points to the cut."""
    geometry = sorted(glob.glob(str(shared_path("tusimple-geometry") / "label_data_*.json")))
    dropped, trimmed, total = [], [], 0
    for path in geometry:
        for line in open(path, encoding="utf-8"):
            label = json.loads(line)
            rows = np.asarray(label["h_samples"], dtype=np.float64)
            x = np.array([[v if v >= 0 else np.nan for v in xs] for xs in label["lanes"]], dtype=np.float64)
            x = x[np.isfinite(x).sum(axis=1) >= 2]
            if len(x) == 0:
                continue
            total += len(x)
            cut = trim_across(x, rows, 720)
            keep = converging(cut, rows, np.ones(len(x)), 1280, 720) & _steep_inner(cut, rows, 1280)
            dropped += [label["raw_file"]] * int((~keep).sum())
            lost = int(np.isfinite(x).sum() - np.isfinite(cut).sum())
            if lost:
                trimmed.append((label["raw_file"], lost))
    assert total == 13795
    assert dropped == []
    assert trimmed == [("clips/0531/1492635095600000079/20.jpg", 2)]
    root = shared_path("culane-train")
    rows = np.arange(0, 591, 10.0)
    for frame in read_culane_list(root / "list.txt", root):
        lanes = [np.asarray(p, dtype=np.float64) for p in frame.lanes if len(p) >= 2]
        if lanes:
            x = np.stack([_label_rows(p, rows) for p in lanes])
            x = x[np.isfinite(x).sum(axis=1) >= 2]
            assert converging(x, rows, np.ones(len(x)), 1640, 590).all(), frame.image_path
            assert _steep_inner(x, rows, 1640).all(), frame.image_path
            np.testing.assert_array_equal(trim_across(x, rows, 590), x)


def test_max_slope_is_flatter_than_every_label():
    """The flattest near-field label direction (TuSimple 9.4, CULane 6.7) stays under the bound."""
    assert MAX_SLOPE > 9.4 * 1.4


def test_the_nearest_lane_on_a_side_must_be_steep_and_the_next_one_out_takes_its_place():
    """Rule 3 on its own: going out from the camera column (640), flat lanes are dropped up to the
    first steep one; a lane whose direction is unknown (NaN) stops the search like a steep one."""
    keep = steep_inner(np.array([-8.0, -7.0, -1.0, 9.0, 2.0, np.nan, 8.0]),
                       np.array([500.0, 400.0, 200.0, 800.0, 1000.0, 300.0, 100.0]), 640.0)
    assert keep.tolist() == [False, False, True, False, True, True, True]
    assert steep_inner(np.array([np.nan, 9.0]), np.array([600.0, 400.0]), 640.0).tolist() == [True, True]
    # a lane exactly under the camera column counts on the right
    assert steep_inner(np.array([8.0, 1.0]), np.array([640.0, 900.0]), 640.0).tolist() == [False, True]
    assert steep_inner(np.array([8.0, 1.0]), np.array([640.0, 900.0]), 640.0, bound=9.0).tolist() == [True, True]
    assert MAX_INNER_SLOPE < MAX_SLOPE


def test_a_flat_curve_reported_next_to_the_camera_is_no_lane():
    """Issue 18: at a crossing, a curve along the zebra's edge came out as LEFT (existence 0.88,
    round 7 on culane-urban/cross.jpg): low on the left, rising flatly (|dx/dy| ~ 9) to meet the real
    RIGHT lane in a V. The two converge (rules 1 and 2 keep both); rule 3 drops the flat one."""
    flat = lane(0, 620, top=640, bottom=710)
    right = lane(1100, 700, top=560, bottom=710)
    x = np.stack([flat, right])
    assert converging(trim_across(x, ROWS, H), ROWS, np.array([0.88, 0.87]), W, H).all()
    kept, slots = resolve_slots(x, ROWS, np.array([0.88, 0.87]), W)
    assert slots.tolist() == [255, 2] and not np.isfinite(kept[0]).any() and np.isfinite(kept[1]).sum() == 16
    # a camera low above the road turns the rule off (max_inner_slope 0)
    assert resolve_slots(x, ROWS, np.array([0.88, 0.87]), W, max_inner_slope=0.0)[1].tolist() == [1, 2]
    with pytest.raises(ValueError, match="max_inner_slope"):
        PostprocessConfig(max_inner_slope=-1.0)


def test_a_flat_lane_is_dropped_before_it_can_cut_the_lane_it_crosses():
    """Rule 3 runs before the no-crossing rule: a confident flat line that crosses the real RIGHT
    (carried on past it) is dropped without cutting RIGHT's far rows."""
    flat = lane(0, 900, top=600, bottom=710)
    right = lane(1100, 700, top=560, bottom=710)
    x, slots = resolve_slots(np.stack([flat, right]), ROWS, np.array([0.99, 0.8]), W)
    assert slots.tolist() == [255, 2] and np.isfinite(x[1]).sum() == 16
