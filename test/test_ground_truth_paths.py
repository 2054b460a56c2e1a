"""Every path gives the same number (issue 12): label file and bag score alike, frames meet their own
ground truth, CULane label quirks read as the official tools read them, times follow the source."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from lanesad_ros.data import AugmentConfig, LaneSegDataset
from lanesad_ros.data.culane import read_culane_list, read_lines_file
from lanesad_ros.metrics import culane as culane_metric
from lanesad_ros.preprocess import Preprocessor
from lanesad_ros.ros.bag_match import match_frames, unique_stamps


# --- frame <-> ground truth matching --------------------------------------------------------

def test_unique_stamps_pair_by_stamp_whatever_the_order():
    m = match_frames([30, 10, 20], [10, 20, 30])
    assert m.gt_index == [2, 0, 1] and not m.notes and not m.problems


def test_all_zero_stamps_pair_by_order_of_recording_and_say_so():
    m = match_frames([0, 0, 0], [0, 0, 0])
    assert m.gt_index == [0, 1, 2] and m.by_order == 3
    assert "order of recording" in m.notes[0] and not m.problems


def test_ties_that_order_cannot_resolve_use_bag_time_or_are_reported():
    # Three images with stamp 5 but two ground-truth messages: order cannot pair them.
    m = match_frames([5, 5, 5, 9], [5, 5, 9])
    assert m.gt_index == [None, None, None, 2] and m.ambiguous == 3
    assert "cannot be told apart" in m.problems[0] and "stamp 5: 3 images, 2 ground-truth" in m.problems[0]
    # Bag times that pair every image of the tie with exactly one ground truth do.
    m = match_frames([5, 5, 9], [5, 5, 5, 9], image_times=[100, 300, 400], gt_times=[100, 200, 300, 400])
    assert m.gt_index == [0, 2, 3] and m.by_bag_time == 2 and not m.problems
    # An image whose stamp no ground truth carries is unmatched, not ambiguous.
    assert match_frames([1, 2], [1]).unmatched == 1


def test_unique_stamps_for_publishing():
    assert unique_stamps([1, 2, 3], [7, 8, 9]) == ([1, 2, 3], None)
    stamps, why = unique_stamps([0, 0, 0], [7, 8, 9])
    assert stamps == [7, 8, 9] and "bag" in why
    stamps, why = unique_stamps([0, 0, 0], [7, 7, 7])
    assert len(set(stamps)) == 3 and "recording order" in why


# --- CULane label quirks ---------------------------------------------------------------------

def _culane_clip(tmp_path, lines: str, flags: str = "1 1 1 0"):
    root = tmp_path / "CULane"
    clip = root / "driver_23_30frame" / "a.MP4"
    clip.mkdir(parents=True)
    cv2.imwrite(str(clip / "00000.jpg"), np.zeros((590, 1640, 3), np.uint8))
    (clip / "00000.lines.txt").write_text(lines)
    (root / "list").mkdir()
    (root / "list" / "train_gt.txt").write_text(f"/driver_23_30frame/a.MP4/00000.jpg {flags}\n")
    return root


def test_culane_single_point_lane_flagged_as_existing_is_a_lane(tmp_path):
    # Three lanes flagged; the third has one point (as some real CULane labels do).
    root = _culane_clip(tmp_path, "-10.5 590 20.25 560 80 500 \n800 590 790 400\n1500.5 585 \n")
    frames = read_culane_list(root / "list" / "train_gt.txt")
    f = frames[0]
    assert [len(l) for l in f.lanes] == [3, 2, 1] and f.slots == [0, 1, 2]
    assert f.lanes[0][0].tolist() == [-10.5, 590.0]  # negative x kept, trailing space ignored
    # Official count: the 1-point lane is a ground-truth lane nothing can match (IoU 0): one FN.
    assert culane_metric.match_lanes([l.copy() for l in f.lanes[:2]], f.lanes)[:3] == (2, 0, 1)
    # Training reads it too (it used to abort: "3 existence flags set but ... has 2 lanes"), with and
    # without augmentation; the drawable lanes are targets.
    for aug in (None, AugmentConfig()):
        item = LaneSegDataset(frames, Preprocessor(input_size=(59, 164)), augment=aug)[0]
        assert item["exist"].tolist()[:2] == [1.0, 1.0]


def test_culane_empty_file_and_out_of_image_points_still_read(tmp_path):
    root = _culane_clip(tmp_path, "", flags="0 0 0 0")
    assert read_culane_list(root / "list" / "train_gt.txt")[0].lanes == []
    path = tmp_path / "x.lines.txt"
    path.write_text("1700 590 1650 500 1600 400 \n")
    assert read_lines_file(path)[0][0].tolist() == [1700.0, 590.0]


# --- times follow the source -------------------------------------------------------------------

def test_stamp_latency_is_unavailable_for_stamps_that_are_no_time_on_this_clock():
    from lanesad_ros.ros.node import FrameStats, stamp_latency_ms

    now = 1_800_000_000 * 10**9
    assert stamp_latency_ms(now - 25_000_000, now) == 25.0
    assert stamp_latency_ms(0, now) is None  # camera without stamps
    assert stamp_latency_ms(now + 10**9, now) is None  # ahead of this clock
    assert stamp_latency_ms(now - 3600 * 10**9, now) is None  # a replayed recording's own clock
    stats = FrameStats()
    stats.on_published(5.0, 6.0, None)
    stats.on_published(5.0, 6.0, 30.0)
    report = stats.report()
    assert report["e2e_stamp_to_publish_ms"] == 30.0 and report["stamp_latency_unavailable"] == 1
    stats.on_published(5.0, 6.0, None)
    report = stats.report()
    assert np.isnan(report["e2e_stamp_to_publish_ms"]) and report["stamp_latency_unavailable"] == 2
