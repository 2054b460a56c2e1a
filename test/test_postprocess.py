"""Probability maps -> lanes, on hand-made maps whose true lanes are known in source pixels."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import shared_path
from lanesad_ros.lanefit import lateral_reversals, slope_reversals
from lanesad_ros.lanes import LaneSlot
from lanesad_ros.postprocess import TUSIMPLE_H_SAMPLES, LaneDecoder, PostprocessConfig, lanes_from_maps, sample_rows
from lanesad_ros.preprocess import Preprocessor
from lanesad_ros.slots import assign_slots

SRC = (1280, 720)


def straight(x_bottom, slope):
    """x(y) of a straight lane through (x_bottom, 719), ``slope`` px of x per px of y upwards."""
    return lambda y: x_bottom + (719.0 - y) * slope


def curved(x_bottom, slope, bend, horizon=150.0):
    """A lane on a road of constant curvature seen through a pinhole camera (the lane
    hyperbola): ``bend`` px of x per unit of ((719 - horizon) / (y - horizon) - 1), 0 at the bottom row."""
    return lambda y: x_bottom + (719.0 - y) * slope + bend * ((719.0 - horizon) / (y - horizon) - 1.0)


def render(pre, source_size, lane_fns, sigma=2.0, amp=0.9, top_row=0.0, bottom_row=1e9):
    """Softmax-like maps (L+1, h, w): a Gaussian ridge per lane along its true curve."""
    h, w = pre.input_size
    _, ys = pre.to_source(np.zeros(h), np.arange(h), source_size)
    cols = np.arange(w, dtype=np.float32)
    maps = np.zeros((len(lane_fns) + 1, h, w), np.float32)
    for i, fn in enumerate(lane_fns):
        if fn is None:
            continue
        u, _ = pre.to_input(fn(ys), ys, source_size)
        ridge = amp * np.exp(-0.5 * ((cols[None, :] - u[:, None]) / sigma) ** 2)
        ridge[(ys < top_row) | (ys > bottom_row)] = 0.0
        maps[i + 1] = ridge
    maps[0] = 1.0 - maps[1:].sum(axis=0)
    return maps


LANES = [straight(200, 0.9), straight(520, 0.3), curved(800, -0.35, 8.0), straight(1150, -1.0)]


def max_error(lane, fn):
    pts = lane.image_points
    return float(np.abs(pts[:, 0] - fn(pts[:, 1])).max())


@pytest.mark.parametrize("fit", ["hyperbola", "none"])
def test_recovers_straight_and_curved_lanes(fit):
    pre = Preprocessor((288, 800), crop_top=0.3)
    maps = render(pre, SRC, LANES)
    exist = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    lanes = lanes_from_maps(maps, exist, pre, SRC, PostprocessConfig(fit=fit))
    assert [lane.slot for lane in lanes] == [LaneSlot.LEFT_LEFT, LaneSlot.LEFT, LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT]
    assert [lane.confidence for lane in lanes] == pytest.approx([0.9, 0.8, 0.7, 0.6])
    for lane, fn in zip(lanes, LANES, strict=True):
        assert len(lane.image_points) >= 20
        assert max_error(lane, fn) < 2.0, (fit, lane.index)
        ys = lane.image_points[:, 1]
        assert np.all(np.diff(ys) < 0), "points must run bottom -> top"
        assert set(ys.tolist()) <= set(float(r) for r in TUSIMPLE_H_SAMPLES)
        # Nothing reported inside the cropped sky (top 30 % = 216 rows).
        assert ys.min() >= 216


@pytest.mark.parametrize("kernel", [(1, 1), (3, 5), (5, 9)])
def test_smoothing_kernels_keep_positions(kernel):
    pre = Preprocessor((288, 800), crop_top=0.3)
    rng = np.random.default_rng(0)
    maps = render(pre, SRC, LANES) + rng.uniform(0, 0.1, (5, 288, 800)).astype(np.float32)
    lanes = lanes_from_maps(maps, np.full(4, 0.9, np.float32), pre, SRC, PostprocessConfig(smooth_kernel=kernel))
    assert len(lanes) == 4
    for lane, fn in zip(lanes, LANES, strict=True):
        assert max_error(lane, fn) < 2.0, (kernel, lane.index)


def test_existence_below_threshold_gives_no_lane():
    pre = Preprocessor((288, 800), crop_top=0.3)
    maps = render(pre, SRC, LANES)
    exist = np.array([0.9, 0.2, 0.49, 0.9], np.float32)
    lanes = lanes_from_maps(maps, exist, pre, SRC, PostprocessConfig(exist_threshold=0.5))
    assert [lane.index for lane in lanes] == [0, 3]
    assert lanes_from_maps(maps, np.zeros(4, np.float32), pre, SRC) == []


def test_weak_maps_below_prob_threshold_give_no_lane():
    pre = Preprocessor((144, 400), crop_top=0.3)
    maps = render(pre, SRC, LANES, amp=0.2)
    exist = np.full(4, 0.9, np.float32)
    assert lanes_from_maps(maps, exist, pre, SRC, PostprocessConfig(prob_threshold=0.3)) == []
    assert len(lanes_from_maps(maps, exist, pre, SRC, PostprocessConfig(prob_threshold=0.1))) == 4


def test_crop_top_mapping_and_small_input():
    """With no crop the lane reaches row 160; with a 40 % crop, positions still map back exactly."""
    fns = [None, straight(500, 0.2), straight(760, -0.2), None]
    exist = np.array([0.1, 0.9, 0.9, 0.1], np.float32)
    for crop, first_row in [(0.0, 160.0), (0.4, 290.0)]:
        pre = Preprocessor((144, 400), crop_top=crop)
        lanes = lanes_from_maps(render(pre, SRC, fns), exist, pre, SRC)
        assert [lane.slot for lane in lanes] == [LaneSlot.LEFT, LaneSlot.RIGHT]
        for lane, fn in zip(lanes, fns[1:3], strict=True):
            assert lane.image_points[-1, 1] == first_row
            assert lane.image_points[0, 1] == 710.0
            assert max_error(lane, fn) < 2.0


def test_fit_covers_only_the_seen_extent():
    pre = Preprocessor((288, 800), crop_top=0.3)
    fns = [None, straight(520, 0.3), None, None]
    maps = render(pre, SRC, fns, top_row=450.0)
    lanes = lanes_from_maps(maps, np.array([0, 0.9, 0, 0], np.float32), pre, SRC)
    assert len(lanes) == 1
    assert lanes[0].image_points[:, 1].min() >= 440.0
    assert max_error(lanes[0], fns[1]) < 2.0


def test_lanes_run_on_to_the_bottom_until_they_leave_the_image():
    """A response that fades above the image bottom (shadow, a car ahead) is continued by the fit
    down to the bottom row, and stops where the curve leaves the image; off, the seen extent only."""
    pre = Preprocessor((288, 800), crop_top=0.3)
    fns = [None, straight(520, 0.3), None, straight(1400, -1.5)]  # the right one leaves at y = 639
    maps = render(pre, SRC, fns, bottom_row=560.0)
    exist = np.array([0, 0.9, 0, 0.9], np.float32)
    config = PostprocessConfig(geometry=False)
    left, right = lanes_from_maps(maps, exist, pre, SRC, config)
    assert left.image_points[:, 1].max() == 710.0 and max_error(left, fns[1]) < 3.0
    assert 620.0 <= right.image_points[:, 1].max() < 640.0 and right.image_points[:, 0].max() < SRC[0]
    assert max_error(right, fns[3]) < 3.0
    seen_only = lanes_from_maps(maps, exist, pre, SRC, config.with_overrides(extend_to_bottom=False))
    assert all(lane.image_points[:, 1].max() <= 570.0 for lane in seen_only)


def test_robust_fit_ignores_a_spurious_blob():
    pre = Preprocessor((288, 800), crop_top=0.3)
    fns = [None, straight(520, 0.3), None, None]
    maps = render(pre, SRC, fns)
    maps[2, 100:110, 700:720] = 0.95  # a bright blob far from the lane on a few rows
    exist = np.array([0, 0.9, 0, 0], np.float32)
    # without the fit and the geometry rules (which cut a lane where it runs across the view)
    raw = lanes_from_maps(maps, exist, pre, SRC, PostprocessConfig(fit="none", geometry=False))[0]
    assert max_error(raw, fns[1]) > 100  # the per-row maximum does jump to the blob
    for fit in ("hyperbola",):
        lane = lanes_from_maps(maps, exist, pre, SRC, PostprocessConfig(fit=fit))[0]
        assert max_error(lane, fns[1]) < 2.0, fit


def test_blobs_and_a_gap_give_no_s_curve_loop_or_curl():
    """Blobs beside a lane on opposite sides near its two ends (the pattern that bends a
    polynomial into an S, or curls its end) and a gap in the middle: the decoded lane keeps
    one bend direction, never turns back, and stays on the true lane."""
    pre = Preprocessor((288, 800), crop_top=0.3)
    fns = [None, curved(560, 0.25, 4.0), None, None]
    maps = render(pre, SRC, fns)
    _, ys = pre.to_source(np.zeros(288), np.arange(288), SRC)
    lane_u, _ = pre.to_input(fns[1](ys), ys, SRC)
    for rows, shift in ((slice(20, 45), 40), (slice(240, 270), -45), (slice(200, 215), 60)):
        cols = np.rint(lane_u[rows] + shift).astype(int)
        maps[2, np.arange(288)[rows], cols] = 0.97  # brighter than the lane's own ridge
    maps[2, 120:160] = 0.0  # a gap (worn paint, a car in front)
    exist = np.array([0, 0.9, 0, 0], np.float32)
    raw = lanes_from_maps(maps, exist, pre, SRC, PostprocessConfig(fit="none", smooth_kernel=(1, 1)))[0]
    assert max_error(raw, fns[1]) > 40  # the per-row maxima do jump to the blobs
    assert lateral_reversals(raw.image_points[:, 0]) >= 2
    lane = lanes_from_maps(maps, exist, pre, SRC, PostprocessConfig(smooth_kernel=(1, 1)))[0]
    x, y = lane.image_points[:, 0], lane.image_points[:, 1]
    assert max_error(lane, fns[1]) < 2.0
    assert lateral_reversals(x) == 0 and slope_reversals(x, y) == 0
    assert y.max() == 710.0 and y.min() <= 300.0  # bridged the gap, kept both ends


def test_culane_rows_and_explicit_rows():
    src = (1640, 590)
    pre = Preprocessor((288, 800), crop_top=240 / 590)
    # two lanes that meet at row 215, above the crop (lanes seen below where they meet)
    fns = [None, straight(700, 0.4), straight(1000, -0.4), None]
    fns = [None if f is None else (lambda y, f=f: f(y + 129)) for f in fns]  # move the lanes to a 590-row image
    exist = np.array([0, 0.9, 0.9, 0], np.float32)
    lanes = lanes_from_maps(render(pre, src, fns), exist, pre, src, PostprocessConfig(rows="culane"))
    assert len(lanes) == 2
    ys = lanes[0].image_points[:, 1]
    assert ys[0] == 589.0 and np.all(ys[1:] % 10 == 0) and np.all(np.diff(ys[1:]) == -20)
    assert ys.min() >= 240
    for lane, fn in zip(lanes, fns[1:3], strict=True):
        assert max_error(lane, fn) < 2.0
    rows = [300.0, 400.0, 500.0, 550.0, 580.0]
    lanes = lanes_from_maps(render(pre, src, fns), exist, pre, src, PostprocessConfig(rows=rows))
    assert lanes[0].image_points[:, 1].tolist() == rows[::-1]


def test_sample_rows_scale_with_the_source_height():
    cfg = PostprocessConfig()
    assert sample_rows(cfg, 720).tolist() == list(map(float, TUSIMPLE_H_SAMPLES))
    assert sample_rows(cfg, 360).tolist() == [r / 2 for r in TUSIMPLE_H_SAMPLES]
    uniform = sample_rows(PostprocessConfig(rows="uniform", row_step=20), 100)
    assert uniform.tolist() == [19.0, 39.0, 59.0, 79.0, 99.0]


def test_gathered_rows_give_the_same_lanes():
    pre = Preprocessor((144, 400), crop_top=0.3)
    maps = render(pre, SRC, LANES)
    exist = np.full(4, 0.9, np.float32)
    decoder = LaneDecoder(pre, PostprocessConfig(), num_lanes=4)
    full = decoder.decode(maps, exist, SRC)
    gathered = decoder.decode(maps[:, decoder.band_index(SRC), :], exist, SRC, gathered=True)
    assert len(full) == len(gathered) == 4
    for a, b in zip(full, gathered, strict=True):
        np.testing.assert_allclose(a.image_points, b.image_points, atol=1e-4)


def test_other_lane_counts_have_unknown_slots():
    pre = Preprocessor((144, 400), crop_top=0.3)
    fns = [straight(100, 1.2)] + LANES + [straight(1270, -1.3)]
    lanes = lanes_from_maps(render(pre, SRC, fns), np.full(6, 0.9, np.float32), pre, SRC)
    assert [lane.index for lane in lanes] == [0, 1, 2, 3, 4, 5]
    assert all(lane.slot == LaneSlot.UNKNOWN for lane in lanes)


def test_bad_config_and_shapes_raise():
    with pytest.raises(ValueError, match="fit"):
        PostprocessConfig(fit="poly")
    with pytest.raises(ValueError, match="rows"):
        PostprocessConfig(rows="kitti")
    with pytest.raises(ValueError, match="smooth_kernel"):
        PostprocessConfig(smooth_kernel=(0, 3))
    with pytest.raises(ValueError, match="unknown postprocess option"):
        PostprocessConfig().with_overrides(exist_treshold=0.4)
    pre = Preprocessor((144, 400))
    with pytest.raises(ValueError, match="existence has 3 lanes"):
        lanes_from_maps(np.zeros((5, 144, 400), np.float32), np.zeros(3), pre, SRC)


def render_label(pre, source_size, label):
    """Maps (5, h, w) a four-slot net would ideally give for a TuSimple label, and the slot of
    each label lane: lanes drawn in the channel of their ``assign_slots`` slot as 3 px
    anti-aliased lines at input resolution, blurred, peak 0.9 (lanes with no slot are not drawn)."""
    h, w = pre.input_size
    hs = np.asarray(label["h_samples"], float)
    lanes = [np.asarray(xs, float) for xs in label["lanes"]]
    slots = assign_slots([np.stack([xs[xs >= 0], hs[xs >= 0]], axis=1) for xs in lanes], source_size[0])
    maps = np.zeros((5, h, w), np.float32)
    for xs, slot in zip(lanes, slots, strict=True):
        if slot == LaneSlot.UNKNOWN:
            continue
        u, v = pre.to_input(xs[xs >= 0], hs[xs >= 0], source_size)
        line = np.zeros((h, w), np.float32)
        pts = np.rint(np.stack([u, v], axis=1) * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(line, [pts], False, 1.0, 3, cv2.LINE_AA, shift=4)
        line = cv2.GaussianBlur(line, (0, 0), 1.0)
        maps[slot + 1] = 0.9 * line / max(float(line.max()), 1e-6)
    maps[0] = 1.0 - maps[1:].sum(axis=0)
    return maps, slots


def test_real_tusimple_lane_shapes_score_near_perfect():
    """On the geometry of real TuSimple labels (tight curves, short and steep lanes, outer
    lanes), the postprocess alone must not cost accuracy and must keep the slots the labels
    have: ideal maps -> lanes -> official TuSimple metric against the lanes that have a slot."""
    from lanesad_ros.metrics.tusimple import frame_scores

    folder = shared_path("tusimple-geometry")
    labels = []
    for path in sorted(folder.glob("label_data_*.json")):
        lines = path.read_text().splitlines()
        labels += [json.loads(line) for line in lines[:: max(1, len(lines) // 20)]]
    assert len(labels) >= 50
    pre = Preprocessor((288, 800), crop_top=0.2)
    scores, wrong_slots = [], 0
    for label in labels:
        hs = [float(y) for y in label["h_samples"]]
        maps, slots = render_label(pre, SRC, label)
        exist = np.array([0.9 if s in slots else 0.0 for s in range(4)], np.float32)
        lanes = lanes_from_maps(maps, exist, pre, SRC, PostprocessConfig(rows=hs))
        wrong_slots += sum(lane.slot != lane.index for lane in lanes)
        pred = [lane.x_at_rows(np.asarray(hs)) for lane in lanes]
        truth = [np.asarray(x, float) for x, s in zip(label["lanes"], slots, strict=True) if s != LaneSlot.UNKNOWN]
        scores.append(frame_scores(pred, truth, hs))
    accuracy, fp, fn = np.mean(scores, axis=0)
    assert wrong_slots == 0
    assert accuracy > 0.98 and fp < 0.02 and fn < 0.03, (accuracy, fp, fn)
