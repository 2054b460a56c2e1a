"""lanesad-eval's existence reliability, bird's-eye plot, contact-sheet and calibrate-existence commands,
and the spawned node's parameters file."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from lanesad_ros.data.synthetic import SceneGenerator
from lanesad_ros.evaluation.plots import frame_score, plot_accuracy, plot_ground_lanes
from lanesad_ros.evaluation.scoring import FrameResult, ModelRun
from lanesad_ros.lanes import Lane, LaneSlot
from lanesad_ros.ros.bag.typestore import START_NS
from lanesad_ros.ros.bag.writer import BagWriter
from lanesad_ros.ros.eval_cli import main
from lanesad_ros.ros.evaluate import spawn_node, stop_node

W, H = 256, 144


@pytest.fixture(scope="module")
def labelled_bag(tmp_path_factory) -> tuple[Path, list]:
    """Four synthetic frames with ground truth, some slots empty (the existence output has both outcomes)."""
    gen = SceneGenerator(seed=21, width=W, height=H)
    scenes = list(itertools.islice((f for f in (gen.frame(i) for i in range(400)) if len(f.lanes) <= 3), 4))
    path = tmp_path_factory.mktemp("bags") / "val"
    with BagWriter(path) as writer:
        for i, frame in enumerate(scenes):
            writer.write(frame.image, START_NS + i * 100_000_000, frame)
    return path, scenes


def test_offline_report_has_the_existence_reliability(labelled_bag, random_weights, tmp_path):
    bag, scenes = labelled_bag
    out = tmp_path / "report"
    assert main(["offline", str(bag), "--weights", str(random_weights), "--out", str(out), "--backend", "torch",
                 "--device", "cpu", "--video", "none"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    existence = m["existence"]
    assert existence["samples"] == 4 * len(scenes)
    assert existence["positives"] == sum(len({s for s in f.slots if 0 <= s < 4}) for f in scenes)
    assert 0.0 <= existence["ece"] <= 1.0 and sum(b["count"] for b in existence["bins"]) == existence["samples"]
    assert (out / "existence_reliability.png").stat().st_size > 0
    text = (out / "report.md").read_text()
    assert "## Lane existence calibration" in text and "existence_reliability.png" in text
    assert not (out / "ground_lanes.png").exists()  # no camera model: no ground points


def test_calibrate_existence_writes_the_weights_metadata(labelled_bag, random_weights, tmp_path, capsys):
    bag, _ = labelled_bag
    weights = tmp_path / "w.safetensors"
    shutil.copy(random_weights, weights)
    shutil.copy(random_weights.with_suffix(".json"), weights.with_suffix(".json"))
    out = tmp_path / "cal"
    assert main(["calibrate-existence", str(bag), "--weights", str(weights), "--out", str(out), "--write",
                 "--method", "temperature", "--backend", "torch", "--device", "cpu"]) == 0
    meta = json.loads(weights.with_suffix(".json").read_text())
    fit = meta["postprocess"]["exist_calibration"]
    assert fit["method"] == "temperature" and fit["bias"] == 0.0 and fit["scale"] > 0
    assert meta["exist_calibration"]["fitted_on"] == str(bag) and meta["exist_calibration"]["frames"] == 4
    result = json.loads((out / "calibration.json").read_text())
    assert result["fit"] == fit and (out / "existence_reliability.png").stat().st_size > 0
    assert "written to" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["calibrate-existence", str(tmp_path / "no_bag"), "--weights", str(weights)])
    assert exc.value.code == 2
    assert "lanesad-eval calibrate-existence: error: bag not found" in capsys.readouterr().err


def test_contact_sheet_command(random_weights, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), np.full((90, 160, 3), 60 * i, np.uint8))
    out = tmp_path / "sheet.jpg"
    assert main(["contact-sheet", str(folder), "--out", str(out), "--weights", str(random_weights), "--columns", "2",
                 "--tile-width", "160", "--backend", "torch", "--device", "cpu"]) == 0
    assert cv2.imread(str(out)).shape == (2 * 90, 2 * 160, 3)
    assert len(json.loads(out.with_suffix(".json").read_text())) == 3
    assert "3 images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["contact-sheet", str(tmp_path / "nothing_here"), "--out", str(out)])
    assert exc.value.code == 2 and "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["contact-sheet", str(tmp_path / "empty"), "--out", str(out)])
    assert exc.value.code == 2 and "no images" in capsys.readouterr().err


def test_ground_lanes_plot(tmp_path):
    run = ModelRun("m", "end_to_end")
    xs = np.linspace(5, 40, 8)
    for i in range(3):
        lanes = [Lane(slot, 0.9, np.zeros((8, 2)), np.stack([xs, np.full(8, y), np.zeros(8)], axis=1))
                 for slot, y in ((LaneSlot.LEFT, 1.8), (LaneSlot.RIGHT, -1.8))]
        run.add(i, i, None, lanes, 10.0)
    run.add(3, 3, None, None, None)  # dropped
    assert plot_ground_lanes([run], tmp_path / "g.png") and (tmp_path / "g.png").stat().st_size > 0
    image_only = ModelRun("m", "inference")
    image_only.add(0, 0, None, [Lane(LaneSlot.LEFT, 0.9, np.zeros((3, 2)))], 1.0)
    assert not plot_ground_lanes([image_only], tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_spawned_node_gets_the_parameters_file_first(tmp_path, monkeypatch):
    """--node-params-file reaches the node before the -p overrides (which therefore win)."""
    seen = {}

    class FakePopen(SimpleNamespace):
        def __init__(self, cmd, **kwargs):
            super().__init__(cmd=cmd, returncode=0)
            seen["cmd"] = cmd

        def poll(self):
            return 0

    monkeypatch.setattr("subprocess.Popen", FakePopen)
    params = tmp_path / "params.yaml"
    params.write_text("lane_detector:\n  ros__parameters:\n    fx: 1000.0\n")
    proc = spawn_node("/cam", False, None, ["fx:=900.0"], tmp_path / "node.log", params_file=str(params))
    stop_node(proc)
    cmd = seen["cmd"]
    assert cmd[cmd.index("--params-file") + 1] == str(params.resolve())
    assert cmd.index("--params-file") < cmd.index("fx:=900.0") and "image_topic:=/cam" in cmd
    with pytest.raises(SystemExit) as exc:
        main(["live", "bag", "--out", str(tmp_path / "r"), "--node-params-file", str(tmp_path / "missing.yaml")])
    assert exc.value.code == 2


def test_the_accuracy_plot_follows_the_labels_official_metric(tmp_path):
    """A CULane bag's accuracy.png plotted per-frame TuSimple accuracy (a new user's trial): frames with
    CULane labels (no h_samples) now give their CULane F1, TuSimple frames their accuracy."""
    culane = FrameResult(0, 0, [], 5.0, labels="culane", tusimple={"accuracy": 0.2},
                         culane={"tp": 3, "fp": 1, "fn": 1})
    empty = FrameResult(1, 10**8, [], 5.0, labels="culane", tusimple={"accuracy": 1.0},
                        culane={"tp": 0, "fp": 0, "fn": 0})
    tusimple = FrameResult(2, 2 * 10**8, [], 5.0, labels="tusimple", tusimple={"accuracy": 0.9},
                           culane={"tp": 0, "fp": 2, "fn": 2})
    assert frame_score(culane) == pytest.approx(0.75) and frame_score(empty) is None
    assert frame_score(tusimple) == pytest.approx(0.9)
    assert frame_score(FrameResult(3, 0, None, None, labels="tusimple")) is None  # dropped
    run = ModelRun(name="m", latency_kind="inference")
    run.results = [culane, empty, tusimple]
    plot_accuracy([run], tmp_path / "accuracy.png")
    assert (tmp_path / "accuracy.png").stat().st_size > 0
