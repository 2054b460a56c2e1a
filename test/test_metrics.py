"""Metrics on hand-computed cases (TuSimple official semantics, CULane, BDD100K pixels)."""
from __future__ import annotations

import itertools
import json
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import shared_path
from lanesad_ros.lanes import Lane, LaneSlot
from lanesad_ros.metrics import bdd100k, culane, tusimple
from lanesad_ros.metrics.tusimple import TuSimpleScorer, frame_scores

H = np.arange(160, 720, 10, dtype=np.float64)  # 56 TuSimple rows


def vertical(x: float) -> np.ndarray:
    return np.full(H.shape, float(x))


GT4 = [vertical(x) for x in (200, 500, 800, 1100)]


# --- TuSimple ---------------------------------------------------------------------------

def test_perfect_prediction_scores_one():
    assert frame_scores(GT4, GT4, H) == (1.0, 0.0, 0.0)


def test_shift_within_threshold_still_perfect_and_threshold_is_strict():
    assert frame_scores([x + 19.9 for x in GT4], GT4, H) == (1.0, 0.0, 0.0)
    # |dx| < 20 is required: exactly 20 px off misses every point.
    assert frame_scores([x + 20 for x in GT4], GT4, H) == (0.0, 1.0, 1.0)


def test_shifted_beyond_threshold_is_fp_and_fn():
    acc, fp, fn = frame_scores([x + 25 for x in GT4], GT4, H)
    assert (acc, fp, fn) == (0.0, 1.0, 1.0)


def test_threshold_scales_with_lane_angle():
    slanted = 0.5 * H + 100  # x = k*y + b with k = 0.5 -> threshold 20 / cos(atan 0.5) = 22.36 px
    thresh = 20 / math.cos(math.atan(0.5))
    assert thresh == pytest.approx(22.36, abs=0.01)
    assert tusimple.lane_angle(slanted, H) == pytest.approx(math.atan(0.5))
    assert frame_scores([slanted + 22.0], [slanted], H) == (1.0, 0.0, 0.0)
    assert frame_scores([slanted + 22.5], [slanted], H) == (0.0, 1.0, 1.0)


def test_missing_lane_is_a_false_negative():
    acc, fp, fn = frame_scores(GT4[:3], GT4, H)
    assert acc == pytest.approx(0.75)
    assert fp == 0.0
    assert fn == pytest.approx(0.25)


def test_extra_lane_is_a_false_positive():
    acc, fp, fn = frame_scores(GT4 + [vertical(1250)], GT4, H)
    assert acc == 1.0
    assert fp == pytest.approx(1 / 5)
    assert fn == 0.0


def test_partial_match_below_085_counts_as_fn_with_its_accuracy():
    # Prediction agrees on the lower 40 of 56 rows only: 40/56 = 0.714 < 0.85.
    pred = vertical(500)
    pred[:16] = 900
    acc, fp, fn = frame_scores([pred], [vertical(500)], H)
    assert acc == pytest.approx(40 / 56)
    assert (fp, fn) == (1.0, 1.0)


def test_missing_points_agree_on_both_sides():
    gt = vertical(500)
    gt[:10] = -2  # lane starts lower down
    pred = gt.copy()
    assert frame_scores([pred], [gt], H) == (1.0, 0.0, 0.0)
    # A prediction that extends into the unlabelled rows disagrees there (-100 vs 500): 46/56.
    acc, _, fn = frame_scores([vertical(500)], [gt], H)
    assert acc == pytest.approx(46 / 56)
    assert fn == 1.0


def test_more_than_four_gt_drops_worst_and_forgives_one_fn():
    gt5 = [vertical(x) for x in (100, 350, 600, 850, 1100)]
    # Four found, the fifth missed: worst (0) dropped, its FN forgiven.
    assert frame_scores(gt5[:4], gt5, H) == (1.0, 0.0, 0.0)
    # Three found: accuracies 1,1,1,0,0 -> (3 - 0) / 4; FN 2 - 1 = 1 -> 1/4.
    acc, fp, fn = frame_scores(gt5[:3], gt5, H)
    assert acc == pytest.approx(0.75)
    assert fp == 0.0
    assert fn == pytest.approx(0.25)


def test_six_gt_lanes_only_one_is_dropped_as_officially():
    # Only one surplus lane is dropped, so 6 perfectly found lanes give (6 - 1) / 4 = 1.25.
    gt6 = [vertical(x) for x in (100, 300, 500, 700, 900, 1100)]
    assert frame_scores(gt6, gt6, H) == (1.25, 0.0, 0.0)


def test_too_many_predictions_or_too_slow_scores_zero():
    gt2 = GT4[:2]
    five = GT4 + [vertical(1250)]
    assert frame_scores(five, gt2, H) == (0.0, 0.0, 1.0)  # 5 > 2 + 2
    assert frame_scores(GT4, gt2, H)[0] == 1.0  # 4 = 2 + 2 is allowed
    assert frame_scores(GT4, GT4, H, runtime_ms=201) == (0.0, 0.0, 1.0)
    assert frame_scores(GT4, GT4, H, runtime_ms=200) == (1.0, 0.0, 0.0)


def test_not_one_to_one_like_the_official_code():
    # One prediction between two close gt lanes matches both: FP = 1 - 2 = -1 (official quirk).
    gts = [vertical(500), vertical(510)]
    acc, fp, fn = frame_scores([vertical(505)], gts, H)
    assert (acc, fp, fn) == (1.0, -1.0, 0.0)


def test_no_predictions_and_no_ground_truth():
    assert frame_scores([], GT4[:2], H) == (0.0, 0.0, 1.0)
    assert frame_scores([vertical(300)], [], H) == (0.0, 1.0, 0.0)


def test_angle_threshold_edge_case_matches_the_official_fit():
    # Issue 12: 20 / cos(atan(k)) is exactly 29 px for k = 1.05. The official fit (sklearn's centred
    # lstsq) gives k = 1.0499999999999998, so 29 px off is outside the threshold: (0.5, 1.0, 1.0).
    assert frame_scores([np.array([129.0, 121.0])], [np.array([100.0, 121.0])], [160, 180]) == (0.5, 1.0, 1.0)
    # Slopes scikit-learn 1.9.1 LinearRegression returns (the last bit differs from sum(dy*dx) / sum(dy*dy)).
    for ys, xs, k in (([610, 620], [295, 317], 2.1999999999999997), ([610, 620], [26, 29], 0.30000000000000004),
                      ([190, 200, 210, 220], [246, 257, 268, 278], 1.0699999999999998)):
        assert tusimple.lane_angle(np.array(xs, float), np.array(ys, float)) == np.arctan(k)


def test_wrong_length_raises_naming_the_lane():
    with pytest.raises(ValueError, match="prediction lane 0"):
        frame_scores([np.zeros(10)], GT4, H)


def lanes_from_xs(xs_list, slots=None):
    out = []
    for i, xs in enumerate(xs_list):
        keep = xs >= 0
        pts = np.stack([xs[keep], H[keep]], axis=1)[::-1]  # bottom -> top
        out.append(Lane(LaneSlot(slots[i]) if slots else LaneSlot(i), 0.9, pts))
    return out


def test_scorer_accepts_lane_objects_and_labelled_frames():
    gt_frame = SimpleNamespace(
        lanes=[np.stack([x, H], axis=1) for x in GT4], slots=[0, 1, 2, 3], h_samples=H, width=1280, height=720)
    scorer = TuSimpleScorer()
    rec = scorer.add(lanes_from_xs(GT4), gt_frame)
    assert (rec["accuracy"], rec["fp"], rec["fn"]) == (1.0, 0.0, 0.0)
    assert rec["slot_pairs"] == [("LEFT_LEFT", "LEFT_LEFT"), ("LEFT", "LEFT"), ("RIGHT", "RIGHT"),
                                 ("RIGHT_RIGHT", "RIGHT_RIGHT")]
    rec = scorer.add(lanes_from_xs([GT4[0] + 30, GT4[1]], slots=[0, 1]), gt_frame)
    assert rec["accuracy"] == pytest.approx(0.25)
    assert rec["fp"] == pytest.approx(0.5)
    assert rec["fn"] == pytest.approx(0.75)
    assert ("LEFT_LEFT", "MISSED") in rec["slot_pairs"] and ("NONE", "LEFT_LEFT") in rec["slot_pairs"]
    res = scorer.result()
    assert res == {"accuracy": pytest.approx(0.625), "fp": pytest.approx(0.25), "fn": pytest.approx(0.375),
                   "frames": 2}
    assert len(scorer.records) == 2


def test_scorer_accepts_tusimple_label_dicts():
    label = {"lanes": [list(GT4[0]), list(GT4[1])], "h_samples": list(H), "raw_file": "x.jpg"}
    scorer = TuSimpleScorer()
    scorer.add([GT4[0], GT4[1]], label)
    assert scorer.result()["accuracy"] == 1.0
    assert TuSimpleScorer().result()["frames"] == 0


def test_gt_points_on_h_samples_keep_their_gaps():
    xs = vertical(400)
    xs[20:25] = -2  # occluded rows stay missing, not interpolated
    pts = np.stack([xs, H], axis=1)
    back = tusimple.points_to_xs(pts, H)
    np.testing.assert_array_equal(back[20:25], -2)
    np.testing.assert_array_equal(back[:20], 400)


def test_real_tusimple_labels_score_perfect_against_themselves():
    path = shared_path("tusimple", "labels.json")
    labels = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    scorer = TuSimpleScorer()
    for label in labels:
        h = np.asarray(label["h_samples"], dtype=np.float64)
        scorer.add([np.asarray(l, dtype=np.float64) for l in label["lanes"]], label)
        # and the same lanes as Lane polylines sampled back at h_samples
        lanes = []
        for xs in label["lanes"]:
            xs = np.asarray(xs, dtype=np.float64)
            keep = xs >= 0
            lanes.append(Lane(LaneSlot.UNKNOWN, 1.0, np.stack([xs[keep], h[keep]], 1)[::-1]))
        scorer.add(lanes, label)
    res = scorer.result()
    assert res["frames"] == 2 * len(labels)
    assert res["accuracy"] == pytest.approx(1.0)
    assert res["fp"] == 0.0 and res["fn"] == 0.0


# --- CULane -----------------------------------------------------------------------------

CU_Y = np.linspace(589, 250, 12)


def cu_lane(x: float, slope: float = 0.0) -> np.ndarray:
    return np.stack([x + slope * (589 - CU_Y), CU_Y], axis=1)


CU_GT = [cu_lane(300, 0.6), cu_lane(700, 0.2), cu_lane(1000, -0.2), cu_lane(1400, -0.6)]


def test_culane_perfect():
    s = culane.CULaneScorer()
    rec = s.add(CU_GT, CU_GT, image_size=(1640, 590))
    assert (rec["tp"], rec["fp"], rec["fn"]) == (4, 0, 0)
    assert s.result()["f1"] == 1.0


def test_culane_small_shift_matches_large_shift_does_not():
    s = culane.CULaneScorer()
    rec = s.add([l + (5, 0) for l in CU_GT], CU_GT, image_size=(1640, 590))
    assert rec["tp"] == 4
    rec = s.add([l + (40, 0) for l in CU_GT], CU_GT, image_size=(1640, 590))
    assert (rec["tp"], rec["fp"], rec["fn"]) == (0, 4, 4)
    res = s.result()
    assert (res["tp"], res["fp"], res["fn"]) == (4, 4, 4)
    assert res["precision"] == 0.5 and res["recall"] == 0.5 and res["f1"] == 0.5


def test_culane_iou_of_shifted_vertical_strips():
    # Two 30 px strips 10 px apart overlap 20 of 40 columns: IoU ~ 0.5 (not > 0.5 after rounding caps).
    a = np.array([[800, 580], [800, 100]], dtype=float)
    iou = culane.iou_matrix([a + (10, 0)], [a], (1640, 590))[0, 0]
    assert iou == pytest.approx(0.5, abs=0.03)


def test_culane_missing_and_extra():
    s = culane.CULaneScorer()
    s.add(CU_GT[:3], CU_GT, image_size=(1640, 590), category="normal")
    s.add(CU_GT + [cu_lane(1600)], CU_GT, image_size=(1640, 590), category="crowd")
    res = s.result()
    assert (res["tp"], res["fp"], res["fn"]) == (7, 1, 1)
    assert res["categories"]["normal"]["recall"] == 0.75
    assert res["categories"]["normal"]["precision"] == 1.0
    assert res["categories"]["normal"]["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert res["categories"]["crowd"]["precision"] == pytest.approx(0.8)
    assert res["frames"] == 2


def test_culane_scales_other_image_sizes():
    # The same lanes described in a 820x295 image (half size) are the same lanes.
    half = [l / 2 for l in CU_GT]
    full_mask = culane.lane_mask(CU_GT[0], (1640, 590))
    half_mask = culane.lane_mask(half[0], (820, 295))
    assert half_mask.shape == (590, 1640)
    assert np.count_nonzero(full_mask & half_mask) / np.count_nonzero(full_mask | half_mask) > 0.95
    # 5 px at half size is 10 px on the canvas: still a match; 20 px (40 on the canvas) is not.
    s = culane.CULaneScorer()
    assert s.add([l + (5, 0) for l in half], half, image_size=(820, 295))["tp"] == 4
    assert s.add([l + (20, 0) for l in half], half, image_size=(820, 295))["tp"] == 0


def test_culane_official_minimal_case_spline_not_polyline():
    # Issue 12: a 3-point prediction is drawn as the official cubic spline (IoU 0.4797, no match),
    # not as the straight polyline (0.5635, a match).
    gt = [np.array([[800, 590], [800, 290]], float)]
    pred = [np.array([[800, 590], [782, 440], [800, 290]], float)]
    iou = culane.iou_matrix(pred, gt)[0, 0]
    assert iou == pytest.approx(0.47967729542835191, abs=1e-12)  # the official evaluator's value
    assert culane.match_lanes(pred, gt)[:3] == (0, 1, 1)


def test_culane_negative_x_is_drawn_clipped_not_dropped():
    lane = np.array([[-10, 590], [20, 560]], float)
    assert culane.lane_mask(lane).any()
    assert culane.match_lanes([lane], [lane.copy()])[:3] == (1, 0, 0)


def test_culane_lanes_with_fewer_than_two_points_still_count():
    # The official reader keeps a 1-point (or empty) lane: IoU 0 with everything, so it is an FN / FP.
    gt = [np.array([[800, 590], [800, 290]], float), np.array([[300, 580]], float)]
    tp, fp, fn, pairs = culane.match_lanes([gt[0].copy()], gt)
    assert (tp, fp, fn) == (1, 0, 1) and pairs == [(0, 0, 1.0)]
    assert culane.match_lanes([np.zeros((0, 2))], [gt[0]])[:3] == (0, 1, 1)


def test_culane_spline_goes_through_the_points_with_50_samples_per_segment():
    pts = np.array([[800, 590], [782, 440], [800, 290], [900, 250]], np.float32)
    s = culane.spline_interp_times(pts)
    assert s.dtype == np.float32 and s.shape == (3 * 50 + 1, 2)
    np.testing.assert_allclose(s[::50], pts, atol=1e-3)
    np.testing.assert_allclose(_ref_spline(pts), s, atol=1e-3)
    with pytest.raises(ValueError, match="more than 2 points"):
        culane.spline_interp_times(pts[:2])


def test_culane_threshold_applies_after_the_officials_tolerant_matching():
    # One gt, two predictions with IoU 0.495 and 0.504: the official Kuhn-Munkres treats edges within
    # 1e-2 of tight as tight and keeps the first (0.495, below 0.5): TP 0, FP 2, FN 1. An exact optimum
    # (scipy's linear_sum_assignment) would pick 0.504 and count a TP.
    ious = np.array([[0.495], [0.504]])  # (pred, gt)
    assert culane.match_ious(ious)[:3] == (0, 2, 1)
    # Hungarian, not greedy: greedy takes 0.9 and leaves 0.0; the official pairs 0.8 + 0.6.
    assert culane.match_ious(np.array([[0.9, 0.6], [0.8, 0.0]]))[:3] == (2, 0, 0)
    # More ground truth than predictions: the official matches from the smaller side.
    assert culane.match_ious(np.array([[0.7, 0.2, 0.6]]))[:3] == (1, 0, 2)


def test_culane_empty_cases_are_undefined_not_zero():
    s = culane.CULaneScorer()
    res = s.result()
    assert (res["precision"], res["recall"], res["f1"]) == (None, None, None) and res["undefined"]
    s.add([], [cu_lane(300)], category="normal")  # ground truth, nothing detected: official precision -1
    s.add([cu_lane(900)], [], category="crossroad")  # nothing to find: official recall -1
    cats = s.result()["categories"]
    assert cats["normal"]["precision"] is None and cats["normal"]["recall"] == 0.0 and cats["normal"]["f1"] is None
    assert cats["crossroad"]["precision"] == 0.0 and cats["crossroad"]["recall"] is None
    assert cats["crossroad"]["f1"] is None
    # Detections and ground truth but no match: P = R = 0, official F nan -> undefined.
    res = s.result()
    assert (res["tp"], res["fp"], res["fn"]) == (0, 1, 1)
    assert res["precision"] == 0.0 and res["recall"] == 0.0 and res["f1"] is None
    assert any("nan" in u for u in res["undefined"])


def test_cv_round_is_half_to_even_and_indefinite_for_nan():
    np.testing.assert_array_equal(culane.cv_round(np.array([0.5, 1.5, 2.5, -0.5, -1.5, 3.49])), [0, 2, 2, 0, -2, 3])
    assert culane.cv_round(np.array([np.nan, np.inf, 3e9]))[0] == np.iinfo(np.int32).min


# Independent straightforward reimplementation of the official tool for the randomised comparison:
# dense spline solve, one cv2.line per segment on a fresh full canvas per lane, IoU from full-canvas sums,
# and the best assignment by brute force.

def _ref_spline(p32: np.ndarray, times: int = 50) -> np.ndarray:
    p = p32.astype(np.float64)
    n = len(p)
    h = np.hypot(*np.diff(p, axis=0).T)
    a = np.zeros((n, n))
    r = np.zeros((n, 2))
    a[0, 0] = a[-1, -1] = 1.0
    for i in range(1, n - 1):
        a[i, i - 1], a[i, i], a[i, i + 1] = h[i - 1], 2 * (h[i - 1] + h[i]), h[i]
        r[i] = 6 * ((p[i + 1] - p[i]) / h[i] - (p[i] - p[i - 1]) / h[i - 1])
    m = np.linalg.solve(a, r)
    out = []
    for i in range(n - 1):
        b = (p[i + 1] - p[i]) / h[i] - h[i] * (2 * m[i] + m[i + 1]) / 6
        for k in range(times):
            t = h[i] / times * k
            out.append(p[i] + b * t + m[i] / 2 * t ** 2 + (m[i + 1] - m[i]) / (6 * h[i]) * t ** 3)
    out.append(p[-1])
    return np.asarray(out, np.float32)


def _ref_canvas(lane: np.ndarray) -> np.ndarray | None:
    p = np.asarray(lane, np.float64).reshape(-1, 2).astype(np.float32)
    if len(p) < 2:
        return None
    if len(p) > 2:
        p = _ref_spline(p)
    canvas = np.zeros((590, 1640), np.uint8)
    ints = np.rint(p).astype(int)
    for (x0, y0), (x1, y1) in zip(ints[:-1], ints[1:], strict=True):
        cv2.line(canvas, (int(x0), int(y0)), (int(x1), int(y1)), 1, 30)
    return canvas


def _ref_count(preds, gts):
    if not gts or not preds:
        return 0, len(preds), len(gts), None
    cp, cg = [_ref_canvas(l) for l in preds], [_ref_canvas(l) for l in gts]
    ious = np.zeros((len(preds), len(gts)))
    for i, a in enumerate(cp):
        for j, b in enumerate(cg):
            if a is not None and b is not None:
                inter = float(np.sum(a * b))
                union = float(a.sum()) + float(b.sum()) - inter
                ious[i, j] = inter / union if union else np.nan  # both off the canvas: 0 / 0
    small, big = sorted((len(preds), len(gts)))
    best, best_tp = -1.0, 0
    for perm in itertools.permutations(range(big), small):
        pairs = [(i, perm[i]) if len(preds) <= len(gts) else (perm[i], i) for i in range(small)]
        total = sum(np.nan_to_num(ious[p, g]) for p, g in pairs)
        if total > best:
            best, best_tp = total, sum(ious[p, g] > 0.5 for p, g in pairs)
    return best_tp, len(preds) - best_tp, len(gts) - best_tp, ious


def _random_lane(rng) -> np.ndarray:
    k = int(rng.choice([1, 2, 3, 4, 6, 9, 12]))
    y0, y1 = rng.uniform(560, 600), rng.uniform(250, 450)
    ys = np.linspace(y0, y1, k)
    x0, slope, curve = rng.uniform(-300, 1900), rng.uniform(-3, 3), rng.uniform(-0.004, 0.004)
    pts = np.stack([x0 + slope * (y0 - ys) + curve * (y0 - ys) ** 2, ys], 1)
    return np.round(pts, int(rng.integers(0, 4))) if rng.random() < 0.5 else pts


def test_culane_matches_a_straightforward_reimplementation_on_random_frames():
    rng = np.random.default_rng(12)
    totals = np.zeros(3, int)
    for _ in range(25):
        gts = [_random_lane(rng) for _ in range(int(rng.integers(0, 5)))]
        preds = [g + rng.normal(0, float(rng.choice([1, 5, 15])), g.shape) + (rng.normal(0, 10), 0)
                 for g in gts if rng.random() < 0.85]
        preds = [p[::-1] if rng.random() < 0.1 else p for p in preds]  # order as given, like the files
        preds += [_random_lane(rng) for _ in range(int(rng.integers(0, 3)))]
        tp, fp, fn, ious = _ref_count(preds, gts)
        assert culane.match_lanes(preds, gts)[:3] == (tp, fp, fn)
        if ious is not None:
            np.testing.assert_array_equal(culane.iou_matrix(preds, gts), ious)
        totals += (tp, fp, fn)
    assert totals.min() > 0  # the set exercises matches, misses and false detections


# --- BDD100K ----------------------------------------------------------------------------

def test_bdd_pixel_scores():
    gt = np.zeros((10, 20), np.uint8)
    gt[:, 5:15] = 1  # 100 lane pixels
    assert bdd100k.pixel_scores(gt, gt) == {"accuracy": 1.0, "iou": 1.0, "overall_accuracy": 1.0}
    pred = np.zeros_like(gt)
    pred[:, 10:20] = 255  # half the lane + 50 false pixels
    s = bdd100k.pixel_scores(pred, gt)
    assert s["accuracy"] == 0.5
    assert s["iou"] == pytest.approx(50 / 150)
    assert s["overall_accuracy"] == pytest.approx(100 / 200)
    s = bdd100k.pixel_scores(np.zeros_like(gt), gt)
    assert s["accuracy"] == 0.0 and s["iou"] == 0.0
    assert bdd100k.pixel_scores(np.zeros_like(gt), np.zeros_like(gt))["iou"] == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        bdd100k.pixel_scores(gt[:5], gt)


def test_bdd_scorer_sums_pixels_over_frames():
    gt = np.zeros((10, 20), np.uint8)
    gt[:, 5:15] = 1
    scorer = bdd100k.BDDScorer()
    scorer.add(gt, gt)
    scorer.add(np.zeros_like(gt), gt)
    res = scorer.result()
    assert res["accuracy"] == 0.5 and res["iou"] == 0.5 and res["frames"] == 2
    mask = bdd100k.lanes_to_mask([np.array([[10, 0], [10, 9]])], (20, 10), width=1)
    assert mask[:, 10].all() and mask.sum() == 10


def test_empty_gt_lanes_dropped_by_the_loader_still_count():
    # Official bench() keeps an all -2 gt lane: a prediction cannot reach 0.85 on it -> FN.
    label = {"lanes": [list(GT4[0]), [-2] * len(H)], "h_samples": list(H)}
    official = frame_scores([GT4[0]], [np.asarray(l, float) for l in label["lanes"]], H)
    frame = SimpleNamespace(lanes=[np.stack([GT4[0], H], 1)], slots=[1], h_samples=H, meta={"empty_lanes": 1})
    rec = TuSimpleScorer().add([GT4[0]], frame)
    assert (rec["accuracy"], rec["fp"], rec["fn"]) == official == (0.5, 0.0, 0.5)


def test_infer_h_samples():
    np.testing.assert_array_equal(tusimple.infer_h_samples([710, 700, 690, 650]), [650, 660, 670, 680, 690, 700, 710])
    np.testing.assert_array_equal(tusimple.infer_h_samples([589, 579.5, 500]), [500, 579.5, 589])


def test_ground_truth_without_h_samples_is_sampled_at_its_own_rows():
    # CULane-style lines (rows 590, 580, ...), no h_samples: scored at the label rows, not TuSimple's.
    rows = np.arange(590, 300, -10.0)
    gt = SimpleNamespace(lanes=[np.stack([400 + 0.5 * (590 - rows), rows], 1)], slots=[1], h_samples=None)
    xs, _, h = tusimple.ground_truth_xs(gt)
    np.testing.assert_array_equal(h, rows[::-1])
    pred = [Lane(LaneSlot.LEFT, 1.0, gt.lanes[0])]
    assert TuSimpleScorer().add(pred, gt)["accuracy"] == 1.0
    assert TuSimpleScorer().add([Lane(LaneSlot.LEFT, 1.0, gt.lanes[0] + (30, 0))], gt)["accuracy"] == 0.0
