"""Slot rules: no crossings, the ego pair straddles the camera, outer lanes only at a lane's spacing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from lanesad_ros.lanes import LaneSlot
from lanesad_ros.postprocess import PostprocessConfig, lanes_from_maps
from lanesad_ros.preprocess import Preprocessor
from lanesad_ros.slots import (
    EGO_WIDTH_MIN_FRACTION,
    LEFT_LEFT_SPACING,
    RIGHT_RIGHT_SPACING,
    SPACING_SPREAD_MAX,
    assign_slots,
    resolve_slots,
    spacing_ratio,
    x_at_row,
)

ROWS = np.arange(160.0, 720.0, 10.0)
LL, L, R, RR = (int(s) for s in (LaneSlot.LEFT_LEFT, LaneSlot.LEFT, LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT))
UNKNOWN = int(LaneSlot.UNKNOWN)


def road(offsets, horizon=250.0, vanish=640.0, top=260.0):
    """Straight lanes through one vanishing point: x = vanish + offset * (y - horizon) / 470,
    i.e. ``offset`` px from ``vanish`` at the bottom row 720; NaN above ``top``."""
    x = vanish + np.asarray(offsets, float)[:, None] * (ROWS[None, :] - horizon) / 470.0
    x[:, ROWS < top] = np.nan
    return x


def label_sets():
    """(x at ROWS (n, 56) NaN where unlabelled, assign_slots slots) of every TuSimple training label."""
    frames = []
    for path in sorted(shared_path("tusimple-geometry").glob("label_data_*.json")):
        for line in path.read_text().splitlines():
            label = json.loads(line)
            hs = np.asarray(label["h_samples"], float)
            lanes = np.asarray(label["lanes"], float).reshape(-1, len(hs))
            polylines = [np.stack([xs[xs >= 0], hs[xs >= 0]], axis=1) for xs in lanes]
            x = np.full((len(lanes), len(ROWS)), np.nan)
            x[:, np.searchsorted(ROWS, hs)] = np.where(lanes >= 0, lanes, np.nan)
            frames.append((x, np.asarray(assign_slots(polylines, 1280))))
    return frames


@pytest.fixture(scope="module")
def labels():
    return label_sets()


def test_spacing_constants_are_the_label_percentiles(labels):
    """The named bounds are what the 3,626 TuSimple labels measure (see slots.py)."""
    medians = {LL: [], RR: []}
    spreads = []
    crossing = pairs = 0
    for x, slots in labels:
        by_slot = {int(s): k for k, s in enumerate(slots) if s != UNKNOWN}
        ordered = [by_slot[s] for s in sorted(by_slot)]
        for a, b in zip(ordered[:-1], ordered[1:], strict=True):
            shared = np.isfinite(x[a]) & np.isfinite(x[b])
            if shared.any():
                pairs += 1
                crossing += bool((x[a, shared] >= x[b, shared]).any())
        if L not in by_slot or R not in by_slot:
            continue
        for outer, neighbour in ((LL, L), (RR, R)):
            if outer in by_slot:
                ratio = spacing_ratio(x[by_slot[outer]], x[by_slot[neighbour]], x[by_slot[L]], x[by_slot[R]], 1280)
                if ratio is not None:
                    medians[outer].append(np.median(ratio))
                    spreads.append(ratio.max() / ratio.min())
    assert len(medians[LL]) > 3000 and len(medians[RR]) > 3000
    np.testing.assert_allclose(np.percentile(medians[LL], [0.5, 99.5]), LEFT_LEFT_SPACING, atol=0.01)
    np.testing.assert_allclose(np.percentile(medians[RR], [0.5, 99.5]), RIGHT_RIGHT_SPACING, atol=0.01)
    assert np.percentile(spreads, 99.5) == pytest.approx(SPACING_SPREAD_MAX, abs=0.01)
    assert crossing / pairs < 0.001  # real neighbouring lanes (almost) never cross: 6 of 9,874 labelled pairs


def test_real_outer_lanes_are_kept_and_a_barrier_or_vehicle_edge_is_not(labels):
    """On real four-lane frames: the labelled outer lanes survive (all but ~1 %, by the
    percentile bounds); the same outer lane moved onto a barrier beside the ego lane (0.3
    ego widths out), or out to 2.5 ego widths, or replaced by a vehicle's vertical edge, is dropped."""
    four = [x[np.argsort(slots)] for x, slots in labels if sorted(slots.tolist()) == [LL, L, R, RR]]
    with np.errstate(invalid="ignore"):
        four = [x for x in four[::4] if not (np.diff(x, axis=0) <= 0).any()]  # 1 of 607 has crossing labels
    assert len(four) > 200
    confidence = np.array([0.9, 0.95, 0.95, 0.9])
    kept = {LL: 0, RR: 0}
    for x in four:
        out, slots = resolve_slots(x, ROWS, confidence, 1280)
        kept[LL] += slots[0] == LL
        kept[RR] += slots[3] == RR
        assert slots[1] == L and slots[2] == R
        width = x[2] - x[1]
        for outer, neighbour, sign in ((0, 1, -1), (3, 2, 1)):
            if spacing_ratio(x[outer], x[neighbour], x[1], x[2], 1280) is None:
                continue
            for fake in (x[neighbour] + sign * 0.3 * width,  # a barrier hugging the ego lane
                         x[neighbour] + sign * 2.5 * width):  # a line two lanes out
                moved = x.copy()
                moved[outer] = np.where(np.isfinite(x[outer]), fake, np.nan)
                assert resolve_slots(moved, ROWS, confidence, 1280)[1][outer] == UNKNOWN
            # A vehicle's side: vertical from row 450 down, 0.8 ego widths out at the bottom, where
            # the neighbouring lane is seen beside all of it.
            rows = ROWS >= 450
            if not np.isfinite(width[rows]).all():
                continue
            edge = x.copy()
            base = x[neighbour, rows][-1] + sign * 0.8 * width[rows][-1]
            edge[outer] = np.where(rows, base, np.nan)
            assert resolve_slots(edge, ROWS, confidence, 1280)[1][outer] == UNKNOWN
    assert kept[LL] >= 0.97 * len(four) and kept[RR] >= 0.97 * len(four), (kept, len(four))


def test_crossing_lanes_the_weaker_gives_way():
    x = road([-700.0, -250.0, 300.0, 800.0])
    # LEFT bends across RIGHT near the camera: dropped (it is weaker than RIGHT).
    crossed = x.copy()
    crossed[1] = np.where(ROWS > 500, x[2] + 40.0, x[1])
    out, slots = resolve_slots(crossed, ROWS, np.array([0.9, 0.6, 0.8, 0.9]), 1280)
    assert np.isnan(out[1]).all() and slots[1] == UNKNOWN
    # The same with LEFT stronger: RIGHT gives way instead.
    out, slots = resolve_slots(crossed, ROWS, np.array([0.9, 0.8, 0.6, 0.9]), 1280)
    assert np.isnan(out[2]).all() and np.isfinite(out[1]).any()
    # Two lanes in order near the camera that touch near the horizon: the weaker loses its far rows only.
    touching = x.copy()
    touching[1] = np.where(ROWS < 300, x[2] + 5.0, x[1])
    out, slots = resolve_slots(touching, ROWS, np.array([0.9, 0.6, 0.8, 0.9]), 1280)
    assert slots.tolist() == [LL, L, R, RR]
    assert np.isnan(out[1, ROWS < 300]).all() and np.isfinite(out[1, ROWS >= 300]).all()


def test_no_crossings_and_straddling_ego_pair_on_random_frames():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = rng.integers(1, 5)
        x = road(rng.uniform(-900, 900, n), vanish=rng.uniform(500, 780)) + rng.normal(0, 30, (n, 1)) * (
            ROWS[None, :] > rng.uniform(300, 700))
        x[rng.random((n, len(ROWS))) < 0.2] = np.nan
        column = rng.uniform(560, 720)
        out, slots = resolve_slots(x, ROWS, rng.uniform(0.5, 1.0, n), 1280, camera_column=column)
        live = [k for k in range(n) if np.isfinite(out[k]).any()]
        assert all(slots[k] != UNKNOWN for k in live) and all(slots[k] == UNKNOWN for k in range(n) if k not in live)
        for a in live:
            for b in live:
                shared = np.isfinite(out[a]) & np.isfinite(out[b])
                if a < b and shared.any():
                    assert (out[a, shared] < out[b, shared]).all()
        bottom = {int(slots[k]): x_at_row(np.stack([out[k][np.isfinite(out[k])], ROWS[np.isfinite(out[k])]], 1), 710.0)
                  for k in live}
        if L in bottom:
            assert bottom[L] < column
        if R in bottom:
            assert bottom[R] >= column
        assert len(set(slots[live].tolist())) == len(live)


def test_slots_follow_the_camera_column():
    """The network put its LEFT lane right of the camera: slots move with the geometry (and a
    third lane on one side has no slot); a known principal point moves the split."""
    x = road([-250.0, 60.0, 500.0])
    out, slots = resolve_slots(x, ROWS, np.full(3, 0.9), 1280)
    assert slots.tolist() == [L, R, RR]
    out, slots = resolve_slots(x, ROWS, np.full(3, 0.9), 1280, camera_column=720.0)
    assert slots.tolist() == [LL, L, R]
    x = road([-900.0, -600.0, -250.0, 300.0])
    out, slots = resolve_slots(x, ROWS, np.full(4, 0.9), 1280)
    assert slots.tolist() == [UNKNOWN, LL, L, R] and np.isnan(out[0]).all()


def test_other_lane_counts_keep_only_the_crossing_rule():
    x = road([-700.0, -250.0, 300.0, 800.0, 1200.0, -2000.0])
    out, slots = resolve_slots(x, ROWS, np.full(6, 0.9), 1280, num_slots=6)
    assert (slots == UNKNOWN).all()
    assert np.isfinite(out[:5]).any(axis=1).all() and np.isnan(out[5]).all()  # the last crosses all


def test_decoder_drops_a_barrier_in_the_left_left_channel():
    """End to end: the LEFT_LEFT channel lights up along a barrier 0.3 ego widths left of
    LEFT; the decoder reports LEFT, RIGHT, RIGHT_RIGHT only. Off, the barrier comes through."""
    pre = Preprocessor((288, 800), crop_top=0.3)
    src = (1280, 720)
    h, w = pre.input_size
    _, ys = pre.to_source(np.zeros(h), np.arange(h), src)
    offsets = [-250.0 - 0.3 * 550.0, -250.0, 300.0, 850.0]
    maps = np.zeros((5, h, w), np.float32)
    cols = np.arange(w, dtype=np.float32)
    for k, offset in enumerate(offsets):
        u, _ = pre.to_input(640.0 + offset * (ys - 250.0) / 470.0, ys, src)
        maps[k + 1] = 0.9 * np.exp(-0.5 * ((cols[None, :] - u[:, None]) / 2.0) ** 2) * (ys > 260)[:, None]
    maps[0] = 1.0 - maps[1:].sum(axis=0)
    exist = np.full(4, 0.9, np.float32)
    lanes = lanes_from_maps(maps, exist, pre, src)
    assert [lane.slot for lane in lanes] == [LaneSlot.LEFT, LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT]
    unchecked = lanes_from_maps(maps, exist, pre, src, PostprocessConfig(geometry=False))
    assert [lane.slot for lane in unchecked] == [LaneSlot.LEFT_LEFT, LaneSlot.LEFT, LaneSlot.RIGHT,
                                                 LaneSlot.RIGHT_RIGHT]
    assert EGO_WIDTH_MIN_FRACTION * 1280 < 550
