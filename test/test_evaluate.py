"""lanesad-eval: offline and live evaluation of small synthetic bags with ground truth.

Untrained weights score near zero, so report structure is checked with them, and the
scoring path itself with an "oracle" detector that answers each frame with its ground truth
(it must score 1.0 through the same bag -> scorer -> report path).
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from lanesad_ros.data.synthetic import SceneGenerator
from lanesad_ros.data.tusimple import write_tusimple_labels
from lanesad_ros.evaluation.scoring import ModelRun, slot_confusion
from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot
from lanesad_ros.ros.bag.typestore import COMPRESSED_TYPE, START_NS
from lanesad_ros.ros.bag.writer import BagWriter
from lanesad_ros.ros.eval_cli import build_parser, main
from lanesad_ros.ros.evaluate import node_topics, run_offline

W, H = 256, 144
N = 4


def tusimple_like(seed: int, n: int) -> list:
    """n synthetic frames with at most 5 lanes, as TuSimple has (more lanes lift the official
    accuracy above 1: only one surplus lane is dropped)."""
    gen = SceneGenerator(seed=seed, width=W, height=H)
    frames = (gen.frame(i) for i in range(100 * n))
    return list(itertools.islice((f for f in frames if len(f.lanes) <= 5), n))


@pytest.fixture(scope="module")
def scenes():
    return tusimple_like(21, N)


def make_bag(path: Path, scenes, storage="mcap", with_gt=True, compressed=False) -> Path:
    with BagWriter(path, storage=storage, compressed=compressed) as writer:
        for i, frame in enumerate(scenes):
            writer.write(frame.image, START_NS + i * 100_000_000, frame if with_gt else None)
    return path


@pytest.fixture(scope="module")
def drive(tmp_path_factory, scenes) -> Path:
    return make_bag(tmp_path_factory.mktemp("bags") / "drive", scenes)


class FakeDetector:
    """Stands in for Detector: the oracle answers with the ground truth, the blind one with nothing."""

    def __init__(self, scenes, oracle: bool, name: str):
        self.scenes = scenes
        self.oracle = oracle
        self.weights_name = self.model_name = name
        self.weights_path = Path(name)
        self.backend_name, self.device = "fake", "cpu"

    def detect(self, bgr):
        # The scene this image shows (nearest, so jpeg-compressed frames are found too).
        frame = min(self.scenes, key=lambda f: np.abs(f.image.astype(np.int16) - bgr).mean())
        lanes = [Lane(LaneSlot(s) if s in LaneSlot._value2member_map_ else LaneSlot.UNKNOWN, 1.0, l[::-1])
                 for l, s in zip(frame.lanes, frame.slots, strict=True)] if self.oracle else []
        return LaneDetections(lanes, W, H, self.model_name, self.weights_name, latency_ms=1.0)


@pytest.fixture
def fake_detectors(monkeypatch, scenes):
    def from_weights(path=None, device="auto", backend="auto", **_):
        return FakeDetector(scenes, oracle=str(path) == "oracle", name=str(path))

    monkeypatch.setattr("lanesad_ros.detector.Detector.from_weights", from_weights)


def load(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def video_frames(path: Path) -> tuple[int, tuple]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    return n, shape


def test_offline_report_with_real_detector(drive, random_weights, tmp_path):
    out = tmp_path / "report"
    n = 2  # an untrained net on a shared CPU: two frames show the plumbing
    rc = main(["offline", str(drive), "--weights", str(random_weights), "--out", str(out),
                        "--backend", "torch", "--device", "cpu", "--max-frames", str(n)])
    assert rc == 0
    m = load(out)
    assert m["mode"] == "offline" and m["frames"] == n and m["errors"] == []
    assert set(m["tusimple"]) == {"accuracy", "fp", "fn", "frames"} and m["tusimple"]["frames"] == n
    assert 0.0 <= m["tusimple"]["accuracy"] <= 1.0
    assert {"precision", "recall", "f1"} <= set(m["culane"])
    assert m["latency_ms"]["kind"] == "inference" and m["latency_ms"]["count"] == n
    assert m["models"][0]["backend"] == "torch-cpu"
    assert len(m["per_frame"]) == n
    for name in ("report.md", "accuracy.png", "latency.png", "slot_confusion.png", "worst_frames.mp4"):
        assert (out / name).stat().st_size > 0, name
    assert "TuSimple accuracy" in (out / "report.md").read_text()
    assert video_frames(out / "worst_frames.mp4") == (n, (H, W, 3))


def test_oracle_scores_perfect_through_the_bag(drive, fake_detectors, tmp_path, capsys):
    out = tmp_path / "oracle"
    assert main(["offline", str(drive), "--weights", "oracle", "--out", str(out), "--video", "none"]) == 0
    m = load(out)
    assert m["tusimple"] == {"accuracy": 1.0, "fp": 0.0, "fn": 0.0, "frames": N}
    assert m["culane"]["f1"] == 1.0
    # the summary line names both benchmarks' figures (CULane F1 was in report.md only)
    assert "TuSimple accuracy 1.0000 FP 0.0000 FN 0.0000, CULane F1 1.0000" in capsys.readouterr().out
    assert not (out / "worst_frames.mp4").exists()


def test_slot_confusion_of_oracle_is_diagonal(drive, fake_detectors, tmp_path, scenes):
    args = build_parser().parse_args(["offline", str(drive), "--weights", "oracle", "--out", str(tmp_path)])
    runs, _ = run_offline(args, None, [])
    m = slot_confusion(runs[0])
    assert m.sum() == sum(len(f.lanes) for f in scenes)
    assert np.count_nonzero(m - np.diag(np.diag(m))) == 0


def test_culane_categories_reach_the_report(scenes):
    run = ModelRun("oracle", "inference")
    for i, (frame, category) in enumerate(zip(scenes, ["night", "night", "curve", "curve"], strict=True)):
        gt = SimpleNamespace(lanes=frame.lanes, slots=frame.slots, h_samples=frame.h_samples, width=W, height=H,
                             meta={"category": category})
        lanes = [Lane(LaneSlot.UNKNOWN, 1.0, l) for l in frame.lanes] if category == "night" else []
        run.add(i, i, gt, lanes, 1.0)
    cats = run.summary(has_gt=True)["culane"]["categories"]
    assert cats["night"]["f1"] == 1.0 and cats["night"]["frames"] == 2
    assert cats["curve"]["recall"] == 0.0


def test_compare_two_weights_side_by_side(drive, fake_detectors, tmp_path, capsys):
    """... and the console line names every model with its figures (it printed the first model's only)."""
    out = tmp_path / "cmp"
    assert main(["offline", str(drive), "--compare", "oracle", "blind", "--out", str(out), "--worst", "2"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "; oracle: TuSimple accuracy 1.0000" in line and "; blind: TuSimple accuracy 0.0000" in line, line
    m = load(out)
    assert m["compare"]["oracle"]["tusimple"]["accuracy"] == 1.0
    assert m["compare"]["blind"]["tusimple"]["accuracy"] == 0.0
    assert m["tusimple"]["accuracy"] == 1.0  # top level = the first weights
    assert video_frames(out / "worst_frames.mp4") == (2, (H, 2 * W, 3))  # side by side


def test_labels_file_instead_of_gt_topic(tmp_path, scenes, fake_detectors):
    drive = make_bag(tmp_path / "nogt", scenes, storage="sqlite3", with_gt=False, compressed=True)
    labels = write_tusimple_labels(scenes, tmp_path / "labels.json")
    out = tmp_path / "lab"
    assert main(["offline", str(drive), "--weights", "oracle", "--labels", str(labels),
                          "--out", str(out), "--video", "none"]) == 0
    m = load(out)
    assert m["image_type"] == COMPRESSED_TYPE
    assert m["tusimple"]["frames"] == N
    # Labels are integer pixels; compressed frames still match the oracle exactly.
    assert m["tusimple"]["accuracy"] == pytest.approx(1.0)


def test_bag_without_ground_truth_still_reports(tmp_path, scenes, fake_detectors):
    drive = make_bag(tmp_path / "plain", scenes, with_gt=False)
    out = tmp_path / "plain_report"
    assert main(["offline", str(drive), "--weights", "oracle", "--out", str(out), "--worst", "1"]) == 0
    m = load(out)
    assert m["frames"] == N and "tusimple" not in m and m["has_ground_truth"] is False
    assert m["errors"] == [] and any("'/lanes_gt' not in bag" in n for n in m["notes"])  # said, not hidden
    assert m["models"][0]["lanes_per_frame"] == pytest.approx(np.mean([len(f.lanes) for f in scenes]))
    assert (out / "accuracy.png").exists() and not (out / "slot_confusion.png").exists()
    assert video_frames(out / "worst_frames.mp4")[0] == 1


def test_damaged_bag_gives_partial_report(tmp_path, monkeypatch):
    scenes = tusimple_like(22, 10)
    drive = make_bag(tmp_path / "cut", scenes)
    data_file = next(drive.glob("*.mcap"))
    with open(data_file, "r+b") as fh:
        fh.truncate(int(data_file.stat().st_size * 0.5))
    oracle = FakeDetector(scenes, True, "oracle")
    monkeypatch.setattr("lanesad_ros.detector.Detector.from_weights", lambda *a, **k: oracle)
    out = tmp_path / "partial"
    rc = main(["offline", str(drive), "--weights", "oracle", "--out", str(out)])
    assert rc == 1
    m = load(out)
    assert 0 < m["frames"] < 10
    assert m["tusimple"]["accuracy"] == 1.0  # what was readable is scored
    errors = " ".join(m["errors"])
    assert "damaged" in errors and f"only {m['frames']} of 10" in errors
    assert "Problems" in (out / "report.md").read_text()


def test_missing_image_topic_is_a_clear_error(drive, tmp_path, capsys):
    out = tmp_path / "missing"
    assert main(["offline", str(drive), "--image-topic", "/front/image", "--out", str(out)]) == 2
    m = load(out)
    assert m["frames"] == 0
    assert "image topic '/front/image' not in bag" in m["errors"][0]
    err = capsys.readouterr().err.strip().splitlines()  # one line, no "0 frames" summary, no "DetectorError:"
    assert err == [f"lanesad-eval: error: {m['errors'][0]} (report in {out})"]
    assert (out / "report.md").exists()
    assert main(["offline", str(drive), "--weights", str(tmp_path / "none.safetensors"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lanesad-eval: error: weights file not found")


def test_node_topics_follow_image_transport_convention():
    assert node_topics("/cam/image_raw", False) == ("/cam/image_raw", "/cam/image_raw")
    assert node_topics("/cam/image_raw/compressed", True) == ("/cam/image_raw", "/cam/image_raw/compressed")
    assert node_topics("/cam/jpeg", True) == ("/cam/jpeg", "/cam/jpeg/compressed")


# --- live, through real DDS between processes ---------------------------------------------

@pytest.fixture
def ros_domain(monkeypatch, domain_id):
    from rosutil import require_ros_messages

    require_ros_messages()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id))
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the spawned node: one thread, as conftest gives this process


def test_live_spawned_node_over_dds(ros_domain, random_weights, tmp_path, scenes):
    drive = make_bag(tmp_path / "live_drive", scenes, compressed=False)
    out = tmp_path / "live"
    rc = main(["live", str(drive), "--spawn", "--weights", str(random_weights), "--out", str(out),
                        "--node-param", "backend:=torch", "--node-param", "device:=cpu", "--video", "all"])
    m = load(out)
    assert rc == 0, m["errors"]
    assert m["mode"] == "live" and m["published"] == N and m["frames"] == N
    assert m["received"] >= 1, (out / "node.log").read_text()
    assert m["dropped"] == N - m["received"]
    assert m["latency_ms"]["kind"] == "end_to_end" and m["latency_ms"]["count"] == m["received"]
    assert m["latency_ms"]["min"] > 0
    assert m["tusimple"]["frames"] == m["received"]
    if m["dropped"]:
        assert m["tusimple_dropped_as_empty"]["frames"] == N
    assert m["models"][0]["model"] == "enet_sad"
    assert video_frames(out / "overlay_all.mp4")[0] == N
    assert (out / "node.log").exists()


# Runs `lanesad-eval live --spawn` with the spawned node stopped (SIGSTOP) the moment the drive has played:
# a node that no longer reads its sockets while the replay closes. The node's pid goes to argv[1].
_NODE_STOPS_READING = """
import os, signal, sys
from lanesad_ros.ros import evaluate, replay
from lanesad_ros.ros.eval_cli import main

pid_file, argv, spawned = sys.argv[1], sys.argv[2:], []
real_spawn, real_play = evaluate.spawn_node, replay.Replayer.play

def spawn(*args, **kwargs):
    spawned.append(real_spawn(*args, **kwargs))
    with open(pid_file, "w") as f:
        f.write(str(spawned[0].pid))
    return spawned[0]

def play(self, *args, **kwargs):
    result = real_play(self, *args, **kwargs)
    os.kill(spawned[0].pid, signal.SIGSTOP)
    return result

evaluate.spawn_node, replay.Replayer.play = spawn, play
sys.exit(main(argv))
"""


def test_live_ends_when_the_spawned_node_stops_reading(ros_domain, random_weights, tmp_path, scenes):
    """A replay whose node stopped reading as the drive ended froze for good, SIGINT included: Fast DDS
    closed our participant while its TCP channel waited on that peer, holding the GIL. The node is now
    ended first; the run finishes and names the node's exit."""
    drive = make_bag(tmp_path / "live_drive", scenes, compressed=False)
    out, pid_file = tmp_path / "live", tmp_path / "node.pid"
    cmd = [sys.executable, "-c", _NODE_STOPS_READING, str(pid_file), "live", str(drive), "--spawn",
           "--weights", str(random_weights), "--out", str(out), "--node-param", "backend:=torch",
           "--node-param", "device:=cpu", "--video", "none"]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the stopped node (its own session)
        pytest.fail("lanesad-eval live did not end within 240 s of a node that stopped reading")
    assert run.returncode == 1, run.stderr[-2000:]
    m = load(out)
    assert m["published"] == N and m["frames"] == N
    assert [e for e in m["errors"] if "lane detector process exited with status -9" in e], m["errors"]


def test_live_warm_up_waits_for_a_settled_backend_and_does_not_count(ros_domain, random_weights, tmp_path, scenes,
                                                                     monkeypatch):
    """A first start-up (empty cache) answers on torch while it measures the backends in the
    background; the replay warms the node up until its diagnostics say the backend is settled, so
    every frame of the drive is answered by the chosen backend and no warm-up answer is counted."""
    monkeypatch.setenv("LANESAD_CACHE_DIR", str(tmp_path / "cache"))
    drive = make_bag(tmp_path / "live_drive", scenes, compressed=False)
    out = tmp_path / "live"
    rc = main(["live", str(drive), "--spawn", "--weights", str(random_weights), "--out", str(out),
               "--node-param", "device:=cpu", "--video", "none"])
    m = load(out)
    assert rc == 0, m["errors"]
    # newest-frame-wins may still drop a frame on a busy machine; none falls into start-up
    assert m["published"] == N and m["received"] >= N - 1, (out / "node.log").read_text()
    assert m.get("unmatched_answers", 0) == 0  # warm-up answers are not counted
    assert "after measuring" in (out / "node.log").read_text()  # the background choice finished first


_CLOSE_FREEZES = """
import ctypes, sys
import rclpy
from lanesad_ros.ros.eval_cli import main

def frozen(*args, **kwargs):
    libc, mutex = ctypes.PyDLL(None), ctypes.create_string_buffer(64)  # PyDLL: the GIL stays held
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)

rclpy.shutdown = frozen
sys.exit(main(sys.argv[1:], close_timeout=2.0))
"""


def test_a_replay_whose_participant_never_closes_ends_with_the_stacks(ros_domain, drive, tmp_path):
    """Whatever holds the close (a user's own node that stopped reading), the process ends."""
    run = subprocess.run([sys.executable, "-c", _CLOSE_FREEZES, "live", str(drive), "--out", str(tmp_path / "r"),
                          "--startup-timeout", "1"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Timeout (0:00:02)!" in run.stderr, run.stderr[-2000:]
    assert 'replay.py", line' in run.stderr and "in close" in run.stderr, run.stderr[-2000:]


def test_live_without_a_detector_fails_clearly(ros_domain, drive, tmp_path):
    out = tmp_path / "nobody"
    assert main(["live", str(drive), "--out", str(out), "--startup-timeout", "1"]) == 2
    assert "no lane detector answered" in load(out)["errors"][0]


def test_a_rate_of_zero_is_refused_before_anything_starts(drive, tmp_path, capsys):
    """'--rate 0' was refused only after the node was spawned, as 'ReplayError: rate must be positive'."""
    for rate in ("0", "-1", "fast"):
        with pytest.raises(SystemExit) as exc:
            main(["live", str(drive), "--spawn", "--out", str(tmp_path / "r"), "--rate", rate])
        assert exc.value.code == 2 and "lanesad-eval live: error: argument --rate" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_mistyped_option_shows_the_subcommands_usage(drive, tmp_path, capsys):
    """'--vidoe all' printed the top level's usage ('lanesad-eval [-h] {offline,live,...}'); abbreviations
    ('--wor 2' for '--worst') are not taken either."""
    for typo in (["--vidoe", "all"], ["--wor", "2"]):
        with pytest.raises(SystemExit) as exc:
            main(["offline", str(drive), "--out", str(tmp_path / "r"), *typo])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("usage: lanesad-eval offline")
        assert f"lanesad-eval offline: error: unrecognized arguments: {' '.join(typo)}" in err
