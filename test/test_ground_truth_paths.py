"""Every path gives the same number (issue 12): label file and bag score alike, frames meet their own
ground truth, CULane label quirks read as the official tools read them, times follow the source."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_path
from lanesad_ros.data import AugmentConfig, LaneSegDataset
from lanesad_ros.data.culane import read_culane_list, read_lines_file
from lanesad_ros.data.tusimple import label_to_frame
from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot
from lanesad_ros.metrics import culane as culane_metric
from lanesad_ros.metrics.tusimple import frame_scores
from lanesad_ros.preprocess import Preprocessor
from lanesad_ros.ros.bag.cli import main as bag_main
from lanesad_ros.ros.bag.matching import match_frames, unique_stamps
from lanesad_ros.ros.bag.reader import BagReader, bag_info
from lanesad_ros.ros.bag.typestore import IMAGE_TYPE, START_NS, TIMING_KEY, typestore
from lanesad_ros.ros.bag.writer import BagWriter, image_message, lane_array_message, restamp_cdr
from lanesad_ros.ros.eval_cli import main as eval_main
from lanesad_ros.ros.node import FrameStats, stamp_latency_ms

H160 = list(range(160, 720, 10))
H240 = list(range(240, 720, 10))


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


# --- a bag's ground truth scores like its label file ------------------------------------------

def _xs(h, x0, slope, top=None):
    """x per h_sample of a straight lane, -2 above row ``top``."""
    return [int(round(x0 + slope * (710 - y))) if top is None or y >= top else -2 for y in h]


LABELS = [  # TuSimple quirks: h_samples from 240, an all -2 lane, gaps, a fifth lane
    {"raw_file": "clips/a/20.jpg", "h_samples": H240,
     "lanes": [_xs(H240, 300, 0.9), [-2] * len(H240), _xs(H240, 700, -0.1), _xs(H240, 1000, -1.1, top=300)]},
    {"raw_file": "clips/b/20.jpg", "h_samples": H160,
     "lanes": [_xs(H160, 200, 1.0, top=260), _xs(H160, 600, 0.2), _xs(H160, 900, -0.7), _xs(H160, 1200, -1.5),
               _xs(H160, 1270, -2.5, top=500)]},
    {"raw_file": "clips/c/20.jpg", "h_samples": H160,
     "lanes": [[-2] * 20 + _xs(H160, 420, 0.6)[20:30] + [-2] * 5 + _xs(H160, 420, 0.6)[35:], _xs(H160, 800, -0.5)]},
]


def _prediction(label: dict) -> list[Lane]:
    """A deterministic imperfect answer: each labelled lane shifted, the first one reaching up to row 160
    (rows a label starting at 240 does not have), the last one missing."""
    h = np.asarray(label["h_samples"], float)
    lanes = []
    for k, xs in enumerate(label["lanes"][:-1]):
        xs = np.asarray(xs, float)
        keep = xs >= 0
        if not keep.any():
            continue
        pts = np.stack([xs[keep] + 6.0 * k, h[keep]], 1)[::-1]
        if k == 0:
            top = pts[-1] + (pts[-1] - pts[-2]) * ((pts[-1, 1] - 160) / max(pts[-2, 1] - pts[-1, 1], 1))
            pts = np.vstack([pts, [[top[0], 160.0]]])
        lanes.append(Lane(LaneSlot.UNKNOWN, 0.9, pts))
    return lanes


class _LabelDetector:
    """Answers each frame (told apart by its grey level) with ``_prediction`` of its label."""

    def __init__(self, labels):
        self.labels = labels
        self.weights_name = self.model_name = "fixed"
        self.weights_path = Path("fixed")
        self.backend_name, self.device = "fake", "cpu"

    def detect(self, bgr):
        k = int(round(float(bgr.mean()) / 40.0)) - 1
        return LaneDetections(_prediction(self.labels[k]), 1280, 720, "fixed", "fixed", latency_ms=1.0)


@pytest.fixture
def tusimple_set(tmp_path, monkeypatch):
    root = tmp_path / "tusimple"
    for k, label in enumerate(LABELS):
        path = root / label["raw_file"]
        path.parent.mkdir(parents=True)
        cv2.imwrite(str(path), np.full((720, 1280, 3), 40 * (k + 1), np.uint8))
    labels = tmp_path / "labels.json"
    labels.write_text("".join(json.dumps(l) + "\n" for l in LABELS))
    monkeypatch.setattr("lanesad_ros.detector.Detector.from_weights",
                        lambda *a, **k: _LabelDetector(LABELS))
    return root, labels


def _per_frame(out: Path) -> list[tuple]:
    m = json.loads((out / "metrics.json").read_text())
    return [(f["fixed"]["accuracy"], f["fixed"]["fp"], f["fixed"]["fn"]) for f in m["per_frame"]], m


def test_tusimple_bag_scores_exactly_like_its_label_file(tmp_path, tusimple_set):
    root, labels = tusimple_set
    assert bag_main(["from-tusimple", str(root), str(labels), str(tmp_path / "b")]) == 0
    assert eval_main(["offline", str(tmp_path / "b"), "--out", str(tmp_path / "r_bag"), "--video", "none"]) == 0
    assert eval_main(["offline", str(tmp_path / "b"), "--labels", str(labels), "--out", str(tmp_path / "r_lab"),
                          "--video", "none"]) == 0
    from_bag, m_bag = _per_frame(tmp_path / "r_bag")
    from_labels, m_lab = _per_frame(tmp_path / "r_lab")
    official = []
    for label in LABELS:
        h = np.asarray(label["h_samples"], float)
        preds = [lane.x_at_rows(h).astype(float) for lane in _prediction(label)]
        official.append(frame_scores(preds, [np.asarray(l, float) for l in label["lanes"]], h))
    assert from_bag == from_labels == official
    assert official[0][2] == 0.5  # frame 0: the missed lane and the all -2 lane, which nothing can match
    assert m_bag["culane"] == m_lab["culane"]
    # The bag holds the label itself: h_samples per frame, the empty lane, the exact points.
    with BagReader(tmp_path / "b") as reader:
        gts = [f.ground_truth for f in reader.frames()]
        assert reader.problems == []
    for gt, label in zip(gts, LABELS, strict=True):
        want = label_to_frame(label, None)
        np.testing.assert_array_equal(gt.h_samples, want.h_samples)
        assert gt.meta["empty_lanes"] == want.meta["empty_lanes"] and gt.slots == want.slots
        for a, b in zip(gt.lanes, want.lanes, strict=True):
            np.testing.assert_array_equal(a, b)


def test_real_tusimple_labels_round_trip_through_a_bag(tmp_path):
    """All 99 real labelled frames (h_samples from 160 or 240, empty lanes): the bag's ground truth is
    the label file's, frame by frame (written with tiny stand-in images)."""
    path = shared_path("tusimple-train", "labels.json")
    labels = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    frames = [label_to_frame(l, None, f"label {i}") for i, l in enumerate(labels)]
    assert any(f.meta["empty_lanes"] for f in frames) and any(f.h_samples[0] == 240 for f in frames)
    with BagWriter(tmp_path / "b") as writer:
        for i, f in enumerate(frames):
            writer.write(np.zeros((8, 8, 3), np.uint8), START_NS + i * 10**8, f)
    with BagReader(tmp_path / "b") as reader:
        gts = reader.ground_truth_for_frames()
    for gt, label, f in zip(gts, labels, frames, strict=True):
        pred = [np.asarray(label["lanes"][0], float)]  # any answer: both must score it identically
        h = np.asarray(label["h_samples"], float)
        assert frame_scores(pred, [np.asarray(l, float) for l in label["lanes"]], h) == \
            frame_scores(pred, [*map(lambda l: l.astype(float), gt.lane_xs()),
                                *[np.full(h.shape, -2.0)] * gt.meta["empty_lanes"]], h)
        np.testing.assert_array_equal(gt.h_samples, f.h_samples)


# --- frames meet their own ground truth --------------------------------------------------------

def _stamped_bag(path: Path, stamps: list[int], gt_stamps: list[int], scenes) -> Path:
    """Images (and ground truth) with the given header stamps, recorded 0.1 s apart."""
    with BagWriter(path) as writer:
        for i, (stamp, frame) in enumerate(zip(stamps, scenes, strict=True)):
            writer.write(frame.image, stamp, frame if i < len(gt_stamps) else None, bag_time_ns=START_NS + i * 10**8)
    return path


@pytest.fixture
def oracle(monkeypatch):
    from test_evaluate import FakeDetector, tusimple_like

    scenes = tusimple_like(33, 4)
    monkeypatch.setattr("lanesad_ros.detector.Detector.from_weights",
                        lambda path=None, **_: FakeDetector(scenes, oracle=True, name="oracle"))
    return scenes


def test_zero_stamps_are_matched_by_order_of_recording(tmp_path, oracle, capsys):
    path = _stamped_bag(tmp_path / "zero", [0, 0, 0, 0], [0, 0, 0, 0], oracle)
    out = tmp_path / "r"
    assert eval_main(["offline", str(path), "--out", str(out), "--weights", "oracle", "--video", "none"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["tusimple"]["accuracy"] == 1.0 and m["tusimple"]["frames"] == 4  # each frame met its own
    assert any("order of recording" in n for n in m["notes"])


def test_duplicate_stamps_that_cannot_be_told_apart_fail_loudly(tmp_path, oracle, capsys):
    # Frames 1 and 2 share a stamp; only frame 1 has ground truth: which image is it for?
    scenes = oracle
    with BagWriter(tmp_path / "dup") as writer:
        for i, stamp in enumerate([10, 20, 20, 30]):
            writer.write(scenes[i].image, stamp, scenes[i] if i != 2 else None, bag_time_ns=START_NS + i * 10**8)
    out = tmp_path / "r"
    rc = eval_main(["offline", str(tmp_path / "dup"), "--out", str(out), "--weights", "oracle", "--video", "none"])
    m = json.loads((out / "metrics.json").read_text())
    assert rc == 1
    assert any("cannot be told apart" in e and "stamp 20: 2 images, 1 ground-truth" in e for e in m["errors"])
    assert m["tusimple"]["frames"] == 2 and m["tusimple"]["accuracy"] == 1.0  # the others still scored right
    assert "cannot be told apart" in capsys.readouterr().err


def test_restamped_replay_bytes():
    ts = typestore()
    msg = image_message(np.zeros((4, 6, 3), np.uint8), 0, "cam")
    data = ts.serialize_cdr(msg, IMAGE_TYPE)
    back = ts.deserialize_cdr(restamp_cdr(bytes(data), 1_700_000_123_456_789_012), IMAGE_TYPE)
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (1_700_000_123, 456_789_012)
    assert back.header.frame_id == "cam" and bytes(back.data) == bytes(msg.data)


# --- times follow the source -------------------------------------------------------------------

def _timing(path: Path) -> dict:
    return json.loads(bag_info(path)["custom_data"][TIMING_KEY])


def test_from_video_uses_the_videos_own_frame_times(tmp_path, capsys):
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 7, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    assert bag_main(["from-video", str(video), str(tmp_path / "b")]) == 0
    with BagReader(tmp_path / "b") as reader:
        keys = reader.image_keys()
    assert [t - keys[0][0] for t, _ in keys] == [round(i * 1e9 / 7) for i in range(5)]  # 7 fps, from the file
    assert [s for _, s in keys] == [t for t, _ in keys]
    assert _timing(tmp_path / "b")["kind"] == "source"
    assert "warning" not in capsys.readouterr().err
    # --rate replaces them, and says so.
    assert bag_main(["from-video", str(video), str(tmp_path / "b2"), "--rate", "2"]) == 0
    assert _timing(tmp_path / "b2") == {"kind": "nominal", "rate_hz": 2.0,
                                        "reason": "--rate given: frames at that rate instead of the video's own times"}
    assert "nominal 2.0 Hz" in capsys.readouterr().err


def test_image_sequences_and_label_sets_are_flagged_nominal(tmp_path, capsys, tusimple_set):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), np.full((48, 64, 3), 50 * i, np.uint8))
    assert bag_main(["from-video", str(tmp_path / "f%03d.png"), str(tmp_path / "seq")]) == 0
    assert _timing(tmp_path / "seq") == {"kind": "nominal", "rate_hz": 10.0,
                                         "reason": "an image sequence carries no frame times"}
    assert "an image sequence carries no frame times: frames stamped at a nominal 10.0 Hz" in capsys.readouterr().err
    root, labels = tusimple_set
    assert bag_main(["from-tusimple", str(root), str(labels), str(tmp_path / "t")]) == 0
    assert _timing(tmp_path / "t")["reason"] == "TuSimple labels carry no frame times"
    out = tmp_path / "r"
    assert eval_main(["offline", str(tmp_path / "t"), "--out", str(out), "--video", "none"]) == 0
    notes = json.loads((out / "metrics.json").read_text())["notes"]
    assert any("nominal (10.0 Hz)" in n for n in notes)


class _EchoReplayer:
    """Stands in for the ROS replay: every published frame is answered at once by the oracle, with the
    header the frame was published with (as the node copies it)."""

    detector = None

    def __init__(self, topic, image_type, lanes_topic, close_timeout=None):
        from lanesad_ros.ros.replay import ReplayResult

        self.image_type, self.result = image_type, ReplayResult()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def wait_for_detector(self, timeout, alive=None):
        return None

    def warm_up(self, data, timeout, alive=None):
        return 0

    def play(self, frames, rate=1.0, settle_s=0.0, progress=None, first_answer_s=60.0):
        from lanesad_ros.ros.convert import image_msg_to_bgr

        store = typestore()
        for i, (_, stamp, data) in enumerate(frames):
            msg = store.deserialize_cdr(data, self.image_type)
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp  # published as announced
            det = self.detector.detect(image_msg_to_bgr(msg))
            answer = lane_array_message([l.image_points for l in det.lanes], [int(l.slot) for l in det.lanes],
                                        stamp, "camera", (det.image_width, det.image_height))
            if stamp in self.result.published:
                self.result.duplicate_stamps += 1
            self.result.published[stamp] = float(i)
            self.result.received.setdefault(stamp, (i + 0.01, answer))
        return self.result


def test_live_replay_tells_zero_stamped_frames_apart(tmp_path, oracle, monkeypatch):
    from test_evaluate import FakeDetector

    _EchoReplayer.detector = FakeDetector(oracle, oracle=True, name="oracle")
    monkeypatch.setattr("lanesad_ros.ros.evaluate.Replayer", _EchoReplayer)
    path = _stamped_bag(tmp_path / "zero", [0, 0, 0, 0], [0, 0, 0, 0], oracle)
    out = tmp_path / "live"
    assert eval_main(["live", str(path), "--out", str(out), "--video", "none"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["received"] == 4 and m["tusimple"]["frames"] == 4 and m["tusimple"]["accuracy"] == 1.0
    assert any("published with their bag" in n for n in m["notes"])
    assert any("order of recording" in n for n in m["notes"])


class _FixedDetector:
    """Answers every frame with the same lanes (CULane pixels)."""

    def __init__(self, lanes):
        self.lanes = lanes
        self.weights_name = self.model_name = "fixed"
        self.weights_path = Path("fixed")
        self.backend_name, self.device = "fake", "cpu"

    def detect(self, bgr):
        return LaneDetections([Lane(LaneSlot.UNKNOWN, 0.9, l) for l in self.lanes], 1640, 590, "fixed", "fixed",
                              latency_ms=1.0)


def test_culane_quirks_score_alike_from_bag_and_list(tmp_path, monkeypatch):
    # Negative x, trailing spaces, a single-point lane flagged as existing: converted without abort, and
    # the bag scores like the list file (and like the official counting).
    root = _culane_clip(tmp_path, "-10.5 590 20.25 560 80 500 \n800 590 790 400 770 300\n1500.5 585 \n")
    answer = [np.array([[-8.0, 590], [22, 560], [81, 500]]), np.array([[805.0, 590], [784, 440], [800, 290]])]
    monkeypatch.setattr("lanesad_ros.detector.Detector.from_weights", lambda *a, **k: _FixedDetector(answer))
    lst = root / "list" / "train_gt.txt"
    assert bag_main(["from-culane", str(root), str(lst), str(tmp_path / "b")]) == 0
    assert eval_main(["offline", str(tmp_path / "b"), "--out", str(tmp_path / "r_bag"), "--video", "none"]) == 0
    assert eval_main(["offline", str(tmp_path / "b"), "--labels", str(lst), "--out", str(tmp_path / "r_lab"),
                      "--video", "none"]) == 0
    m_bag = json.loads((tmp_path / "r_bag" / "metrics.json").read_text())
    m_lab = json.loads((tmp_path / "r_lab" / "metrics.json").read_text())
    gt = read_culane_list(lst)[0].lanes
    tp, fp, fn, _ = culane_metric.match_lanes(answer, gt)
    assert (m_bag["culane"]["tp"], m_bag["culane"]["fp"], m_bag["culane"]["fn"]) == (tp, fp, fn)
    assert m_bag["culane"] == m_lab["culane"] and fn >= 1  # the 1-point lane is always missed
    assert m_bag["per_frame"] == m_lab["per_frame"]


def test_bags_written_before_per_frame_metadata_still_read(tmp_path):
    from lanesad_ros.ros.bag.ground_truth import GroundTruthIndex
    from lanesad_ros.ros.bag.typestore import CATEGORIES_KEY, H_SAMPLES_KEY

    frames = [label_to_frame(l, None) for l in LABELS]
    frames[1].meta["category"] = "night"
    writer = BagWriter(tmp_path / "old")
    for i, f in enumerate(frames):
        writer.write(np.zeros((8, 8, 3), np.uint8), START_NS + i, f)
    writer._gt_index = GroundTruthIndex()  # the old writer kept the first h_samples and categories by stamp
    writer._writer.set_custom_data(H_SAMPLES_KEY, json.dumps(H240))
    writer._writer.set_custom_data(CATEGORIES_KEY, json.dumps({str(START_NS + 1): "night"}))
    writer.close()
    with BagReader(tmp_path / "old") as reader:
        gts = reader.ground_truth_for_frames()
        assert not reader.problems and any("convert it again" in n for n in reader.notes)
    assert all(list(g.h_samples) == H240 for g in gts)
    assert [g.meta.get("category") for g in gts] == [None, "night", None]
