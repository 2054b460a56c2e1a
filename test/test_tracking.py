"""LaneTracker: steadier on a jittered sequence, still follows real changes, holds short dropouts."""
from __future__ import annotations

import numpy as np
import pytest

from lanesad_ros.lanes import Lane, LaneSlot
from lanesad_ros.tracking import LaneTracker

ROWS = np.arange(710.0, 250.0, -10.0)


def lane_at(offset, slot=LaneSlot.LEFT, rng=None, jitter=0.0, confidence=0.9):
    """A gently curved lane shifted by ``offset`` px, with per-frame offset and per-point jitter."""
    x = 500.0 + offset + 0.45 * (719.0 - ROWS) - 2e-4 * (719.0 - ROWS) ** 2
    if rng is not None:
        x = x + rng.normal(0.0, jitter) + rng.normal(0.0, jitter / 2, size=x.shape)
    return Lane(slot=slot, confidence=confidence, image_points=np.stack([x, ROWS], axis=1))


def frame_to_frame_variance(sequence):
    xs = np.stack([lanes[0].image_points[:, 0] for lanes in sequence])
    return float(np.var(np.diff(xs, axis=0)))


def test_tracked_lanes_are_steadier_than_raw_detections():
    rng = np.random.default_rng(0)
    raw = [[lane_at(0.0, rng=rng, jitter=4.0)] for _ in range(80)]
    tracker = LaneTracker()
    tracked = [tracker.update(lanes) for lanes in raw]
    assert all(len(lanes) == 1 and lanes[0].slot == LaneSlot.LEFT for lanes in tracked)
    raw_var, tracked_var = frame_to_frame_variance(raw[10:]), frame_to_frame_variance(tracked[10:])
    assert tracked_var < 0.3 * raw_var, (raw_var, tracked_var)
    # And it stays on the lane: no bias.
    truth = lane_at(0.0).image_points[:, 0]
    mean_tracked = np.mean([lanes[0].image_points[:, 0] for lanes in tracked[10:]], axis=0)
    assert np.abs(mean_tracked - truth).max() < 3.0


def test_follows_a_drift_and_a_jump():
    rng = np.random.default_rng(1)
    tracker = LaneTracker()
    for i in range(60):  # the lane drifts 1.5 px a frame (the car moving within its lane)
        out = tracker.update([lane_at(1.5 * i, rng=rng, jitter=1.0)])
    lag = np.abs(out[0].image_points[:, 0] - lane_at(1.5 * 59).image_points[:, 0]).mean()
    assert lag < 8.0
    out = tracker.update([lane_at(300.0)])  # a lane change: the slot now sees another line
    np.testing.assert_allclose(out[0].image_points[:, 0], lane_at(300.0).image_points[:, 0], atol=1e-6)


def test_holds_a_missing_lane_then_drops_it_and_keeps_slots_apart():
    tracker = LaneTracker(hold_frames=2, hold_decay=0.5)
    left, right = lane_at(0.0, LaneSlot.LEFT), lane_at(400.0, LaneSlot.RIGHT, confidence=0.8)
    out = tracker.update([left, right])
    assert [lane.slot for lane in out] == [LaneSlot.LEFT, LaneSlot.RIGHT]
    out = tracker.update([left])
    assert [lane.slot for lane in out] == [LaneSlot.LEFT, LaneSlot.RIGHT]
    assert out[1].confidence == pytest.approx(0.4)
    np.testing.assert_allclose(out[1].image_points, right.image_points, atol=1e-3)
    assert [lane.slot for lane in tracker.update([left])] == [LaneSlot.LEFT, LaneSlot.RIGHT]
    assert [lane.slot for lane in tracker.update([left])] == [LaneSlot.LEFT]
    tracker.reset()
    assert tracker.update([]) == []


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="gate_px"):
        LaneTracker(gate_px=0)
    with pytest.raises(ValueError, match="hold"):
        LaneTracker(hold_frames=-1)


def test_a_new_image_size_restarts_every_track():
    """1920x1080 frames, then 640x480: no lane of the old geometry (held or blended) reaches the new frames."""
    big_rows = np.arange(1070.0, 500.0, -20.0)
    big = [Lane(slot=slot, confidence=0.9, image_points=np.stack([np.full_like(big_rows, x), big_rows], axis=1))
           for slot, x in ((LaneSlot.LEFT, 700.0), (LaneSlot.RIGHT, 1864.0))]
    small_rows = np.arange(470.0, 220.0, -10.0)
    small = [Lane(slot=LaneSlot.LEFT, confidence=0.9,
                  image_points=np.stack([np.full_like(small_rows, 250.0), small_rows], axis=1))]
    tracker = LaneTracker()
    for _ in range(5):
        tracker.update(big, image_size=(1920, 1080))
    for _ in range(3):
        out = tracker.update(small, image_size=(640, 480))
        points = np.concatenate([lane.image_points for lane in out])
        assert len(out) == 1 and (points[:, 0] <= 640).all() and (points[:, 1] <= 480).all()
        np.testing.assert_allclose(out[0].image_points[:, 0], 250.0)  # not blended with x = 700
    assert tracker.update([], image_size=(640, 480))  # the same size: held as before


def stream(tracker, frames, start_s=100.0, period_s=1 / 30):
    """Feed ``frames`` (lists of lanes) with header stamps ``period_s`` apart; the last output and stamp."""
    out = None
    for i, lanes in enumerate(frames):
        out = tracker.update(lanes, image_size=(1280, 720), stamp_s=start_s + i * period_s)
    return out, start_s + (len(frames) - 1) * period_s


@pytest.mark.parametrize("jump_s", [5.0, 1.01, -0.001, -3600.0], ids=["pause_5s", "just_over_bound", "back_1ms",
                                                                       "back_1h"])
def test_a_pause_or_a_stamp_going_back_restarts_the_tracks(jump_s):
    """Issue 21.1: after a 5 s pause (or a looped bag, a sim-time reset) the first new lanes are the
    detections themselves, not blended ~20 px towards the old tracks, and a frame without lanes
    reports none of the old ones."""
    before = [lane_at(0.0, LaneSlot.LEFT), lane_at(400.0, LaneSlot.RIGHT)]
    after = [lane_at(20.0, LaneSlot.LEFT), lane_at(420.0, LaneSlot.RIGHT)]  # 20 px: inside the 40 px gate
    tracker = LaneTracker()
    _, last = stream(tracker, [before] * 10)
    out = tracker.update(after, image_size=(1280, 720), stamp_s=last + jump_s)
    for got, detected in zip(out, after, strict=True):
        np.testing.assert_allclose(got.image_points, detected.image_points, atol=1e-3)
    assert tracker.update([], image_size=(1280, 720), stamp_s=last + jump_s + 0.03) != []  # the new tracks hold
    tracker = LaneTracker()
    _, last = stream(tracker, [before] * 10)
    assert tracker.update([], image_size=(1280, 720), stamp_s=last + jump_s) == []


def test_within_the_bound_lanes_are_still_blended_and_held():
    """The other side of the bound: 1/30 s and 0.99 s later the detection is blended, a missing lane held."""
    before, after = [lane_at(0.0)], [lane_at(20.0)]
    for gap_s in (1 / 30, 0.99):
        tracker = LaneTracker()
        _, last = stream(tracker, [before] * 10)
        out = tracker.update(after, image_size=(1280, 720), stamp_s=last + gap_s)
        shift = np.mean(out[0].image_points[:, 0] - before[0].image_points[:, 0])
        assert 1.0 < shift < 19.0, shift
        tracker = LaneTracker()
        _, last = stream(tracker, [before] * 10)
        assert len(tracker.update([], image_size=(1280, 720), stamp_s=last + gap_s)) == 1


def test_a_missing_lane_is_held_for_frames_but_never_longer_than_the_bound():
    """At 2.5 Hz three missed frames are 1.2 s: the lane goes once 1.0 s have passed, not after 3 frames."""
    left, right = lane_at(0.0, LaneSlot.LEFT), lane_at(400.0, LaneSlot.RIGHT)
    tracker = LaneTracker(hold_frames=3, max_gap_s=1.0)
    out, last = stream(tracker, [[left, right]] * 5, period_s=0.4)
    slots = [[lane.slot for lane in tracker.update([left], stamp_s=last + 0.4 * k)] for k in (1, 2, 3)]
    assert slots == [[LaneSlot.LEFT, LaneSlot.RIGHT], [LaneSlot.LEFT, LaneSlot.RIGHT], [LaneSlot.LEFT]]
    # Without stamps (offline callers) the frame count alone rules, as before.
    tracker = LaneTracker(hold_frames=3)
    for _ in range(5):
        tracker.update([left, right])
    assert [len(tracker.update([left])) for _ in range(4)] == [2, 2, 2, 1]


def test_bad_max_gap_raises():
    with pytest.raises(ValueError, match="max_gap_s"):
        LaneTracker(max_gap_s=0.0)
