"""INT8 path: the per-camera accuracy guard's arithmetic, the calibration frames, and that only a
model that passed the current guard is offered."""
from __future__ import annotations

import ast
import importlib.util
import json
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT, shared_path
from lanesad_ros.backends import cache
from lanesad_ros.data.frames import LabelledFrame
from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot
from lanesad_ros.model import build_model
from lanesad_ros.model.export import export_graphs
from lanesad_ros.training.quantize import (
    DEFAULT_CALIBRATION,
    DEFAULT_CONFIG,
    MAX_ACCURACY_DROP,
    MAX_F1_DROP,
    calibration_batches,
    guard_frames,
    lane_shifts,
    main,
    quantize_graph,
    run_guard,
    thumbnail,
)
from lanesad_ros.training.tune import ValFrame

ROWS = np.arange(160, 720, 10, dtype=np.float32)  # TuSimple h_samples
CULANE_ROWS = np.arange(590, 250, -10, dtype=np.float32)  # CULane labels: every 10 rows from the bottom


def detections(xs_by_index: dict[int, float], rows=ROWS, size=(1280, 720)) -> LaneDetections:
    """Vertical lanes at the given x (source px), one per lane index, on ``rows``."""
    lanes = [Lane(slot=LaneSlot.from_index(i), index=i, confidence=0.9,
                  image_points=np.stack([np.full(rows.shape, x, np.float32), np.sort(rows)[::-1]], 1))
             for i, x in xs_by_index.items()]
    return LaneDetections(lanes=lanes, image_width=size[0], image_height=size[1])


class Replay:
    """A stand-in detector answering each frame with the next prepared LaneDetections."""

    def __init__(self, answers):
        self.answers = list(answers)

    def detect(self, image):
        return self.answers.pop(0)


def tusimple_frame(xs: list[float], clip: str = "a") -> ValFrame:
    """A TuSimple validation frame (1280x720, black) with vertical lanes at ``xs`` on the h_samples."""
    lanes = [np.stack([np.full(ROWS.shape, x, np.float32), ROWS], 1) for x in xs]
    frame = LabelledFrame(image_path=None, image=np.zeros((720, 1280, 3), np.uint8), lanes=lanes,
                          slots=[255] * len(xs), h_samples=ROWS)
    return ValFrame("tusimple", frame, f"tusimple:{clip}")


def culane_frame(xs: list[float]) -> ValFrame:
    """A CULane validation frame (1640x590, black) with vertical lanes at ``xs``."""
    lanes = [np.stack([np.full(CULANE_ROWS.shape, x, np.float32), CULANE_ROWS], 1) for x in xs]
    frame = LabelledFrame(image_path=None, image=np.zeros((590, 1640, 3), np.uint8), lanes=lanes,
                          slots=[255] * len(xs), width=1640, height=590)
    return ValFrame("culane", frame, "culane:clip")


def culane_detections(xs_by_index: dict[int, float]) -> LaneDetections:
    return detections(xs_by_index, CULANE_ROWS, (1640, 590))


def test_lane_shift_compares_the_same_lane_on_common_rows():
    a, b = detections({0: 400.0, 1: 600.0}), detections({0: 403.0, 1: 600.5, 2: 900.0})
    assert sorted(lane_shifts(a, b, ROWS)) == pytest.approx([0.5] * len(ROWS) + [3.0] * len(ROWS))


def test_guard_passes_small_moves_and_fails_a_lost_lane_or_a_large_move():
    frames = [tusimple_frame([400.0, 600.0]), tusimple_frame([420.0, 640.0])]
    exact = [detections({0: 400.0, 1: 600.0}), detections({0: 420.0, 1: 640.0})]
    near = [detections({0: 401.0, 1: 601.0}), detections({0: 421.0, 1: 641.0})]
    record = run_guard(Replay(exact), Replay(near), frames)
    tusimple = record["cameras"]["tusimple"]
    assert record["passed"] and tusimple["median_shift_px"] == pytest.approx(1.0)
    assert tusimple["accuracy_fp32"] == tusimple["accuracy_int8"] == pytest.approx(1.0)
    lost = [detections({0: 400.0}), detections({0: 420.0, 1: 640.0})]  # one lane of four missing
    record = run_guard(Replay(exact), Replay(lost), frames)
    tusimple = record["cameras"]["tusimple"]
    assert not record["passed"] and tusimple["accuracy_fp32"] - tusimple["accuracy_int8"] > MAX_ACCURACY_DROP
    moved = [detections({0: 408.0, 1: 608.0}), detections({0: 428.0, 1: 648.0})]  # within TuSimple's 20 px
    record = run_guard(Replay(exact), Replay(moved), frames)
    assert record["cameras"]["tusimple"]["accuracy_int8"] == pytest.approx(1.0) and not record["passed"]
    assert "median lane shift 8.00 px" in record["verdict"]


CULANE_XS = [300.0, 700.0, 1000.0, 1400.0]


def test_guard_judges_every_camera():
    """Issue 18: an INT8 model that kept TuSimple accuracy (the one camera guarded) lost CULane
    lanes at night and ``backend: auto`` picked it. Each camera is judged on its own metric now."""
    frames = [tusimple_frame([400.0, 600.0]), culane_frame(CULANE_XS), tusimple_frame([420.0, 640.0], "b"),
              culane_frame(CULANE_XS)]
    tus = [detections({0: 400.0, 1: 600.0}), detections({0: 420.0, 1: 640.0})]
    cul = [culane_detections(dict(enumerate(CULANE_XS)))] * 2
    fp32 = [tus[0], cul[0], tus[1], cul[1]]
    lost = culane_detections({0: 300.0, 1: 700.0, 2: 1000.0})  # the fourth lane gone
    record = run_guard(Replay(fp32), Replay([tus[0], lost, tus[1], cul[1]]), frames)
    tusimple, culane = record["cameras"]["tusimple"], record["cameras"]["culane"]
    assert tusimple["passed"] and tusimple["accuracy_delta"] == 0.0 and tusimple["frames"] == 2
    assert culane["f1_fp32"] == 1.0 and culane["f1_int8"] == pytest.approx(2 * 7 / (7 + 8))  # 7 of 8 lanes
    assert culane["fn_int8"] == 1 and culane["f1_delta"] < -MAX_F1_DROP and not culane["passed"]
    assert not record["passed"] and "CULane F1 fp32 1.0000, int8 0.9333" in record["verdict"]
    near = [detections({0: 401.0, 1: 601.0}), culane_detections({i: x + 1.5 for i, x in enumerate(CULANE_XS)}),
            detections({0: 421.0, 1: 641.0}), culane_detections({i: x - 1.5 for i, x in enumerate(CULANE_XS)})]
    record = run_guard(Replay(fp32), Replay(near), frames)
    assert record["passed"] and all(c["passed"] for c in record["cameras"].values())
    assert record["cameras"]["culane"]["f1_delta"] == 0.0
    assert record["cameras"]["culane"]["median_shift_px"] == pytest.approx(1.5)


def test_a_lane_shift_on_one_camera_fails_the_guard():
    frames = [tusimple_frame([400.0, 600.0]), culane_frame(CULANE_XS)]
    fp32 = [detections({0: 400.0, 1: 600.0}), culane_detections(dict(enumerate(CULANE_XS)))]
    moved = [fp32[0], culane_detections({i: x + 9.0 for i, x in enumerate(CULANE_XS)})]  # IoU still > 0.5
    record = run_guard(Replay(fp32), Replay(moved), frames)
    assert record["cameras"]["culane"]["f1_delta"] == 0.0 and not record["cameras"]["culane"]["passed"]
    assert record["cameras"]["tusimple"]["passed"] and not record["passed"]


def road(seed: int) -> np.ndarray:
    """A smooth random 1280x720 BGR picture (JPEG keeps it close to itself)."""
    small = np.random.default_rng(seed).integers(0, 256, (18, 32, 3), dtype=np.uint8)
    return cv2.resize(small, (1280, 720), interpolation=cv2.INTER_CUBIC)


def test_calibration_takes_cameras_in_turn_and_never_a_validation_frame(tmp_path):
    a, b = tmp_path / "camera_a", tmp_path / "camera_b"
    a.mkdir(), b.mkdir()
    for i in range(3):
        cv2.imwrite(str(a / f"{i}.jpg"), road(i), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(b / f"{i}.jpg"), road(10 + i), [cv2.IMWRITE_JPEG_QUALITY, 95])
    validation = road(1)  # camera_a/1.jpg is a validation frame, stored there re-encoded
    cv2.imwrite(str(a / "1.jpg"), validation, [cv2.IMWRITE_JPEG_QUALITY, 75])
    seen = []
    stand_in = SimpleNamespace(preprocessor=lambda image: seen.append(image) or np.zeros((3, 2, 2), np.float32))
    batches, described = calibration_batches(stand_in, [a, b], 4, exclude=thumbnail(validation)[None])
    assert len(batches) == 4 and batches[0].shape == (1, 3, 2, 2)
    firsts = [thumbnail(road(s)) for s in (0, 10, 11, 2)]  # a/0, b/0, (a/1 left out), b/1, a/2
    assert [float(np.abs(thumbnail(im) - t).mean()) < 2 for im, t in zip(seen, firsts, strict=True)] == [True] * 4
    assert described.startswith(f"4 frames: 2 of {a}, 2 of {b}; 1 left out as validation frames (camera_a/1.jpg)")
    batches, described = calibration_batches(stand_in, [a, b], 10)
    assert len(batches) == 6 and "left out" not in described


def test_default_calibration_spans_cameras_and_holds_no_validation_frame(monkeypatch):
    """The old default, unlabeled/tusimple-frames, became the labelled frames of tusimple-train-0313,
    validation frames among them; the default now comes from four cameras and none is a
    validation frame of the default config."""
    for folder in ("tusimple-train", "tusimple-train-0313", "culane-train", "unlabeled/tusimple-frames"):
        shared_path(*folder.split("/"))
    monkeypatch.chdir(REPO_ROOT)  # the config's paths are relative to the repository root
    val, described = guard_frames(DEFAULT_CONFIG)
    assert {f.metric for f in val} == {"tusimple", "culane"} and "52 tusimple, 60 culane" in described
    exclude = np.stack([thumbnail(f.frame.load_image()) for f in val])
    sizes = []
    stand_in = SimpleNamespace(preprocessor=lambda image: sizes.append(image.shape[:2]) or np.zeros((3, 1, 1)))
    batches, described = calibration_batches(stand_in, DEFAULT_CALIBRATION, 150, exclude)
    assert len(batches) == 78 and "left out" not in described and {(720, 1280), (590, 1640)} <= set(sizes)
    old = DEFAULT_CALIBRATION[0].parent / "tusimple-frames"
    batches, described = calibration_batches(stand_in, [old], 200, exclude)
    assert len(batches) == 170 - 33 and "33 left out as validation frames" in described


def test_int8_offered_only_after_a_passed_guard(random_weights, tmp_path, monkeypatch):
    ov = pytest.importorskip("openvino")
    monkeypatch.setenv("LANESAD_CACHE_DIR", str(tmp_path / "cache"))
    fp32 = Detector.from_weights(random_weights, device="cpu", backend="openvino", threads=1)
    folder = cache.int8_dir(fp32.artefact_base())
    folder.mkdir(parents=True)
    # The fp32 graph stands in for a quantised one: this checks the offering, not the quantisation.
    ov.save_model(ov.Core().read_model(str(fp32.onnx_path(pooling_indices=False))), str(folder / "model.xml"))
    (folder / "guard.json").write_text(json.dumps({"passed": False, "verdict": "accuracy dropped",
                                                   "guard_version": cache.GUARD_VERSION}))
    with pytest.raises(DetectorError, match="guard failed: accuracy dropped"):
        Detector.from_weights(random_weights, device="cpu", backend="openvino-int8")
    assert "openvino-int8" not in [c.kind for c in fp32._candidates("auto")]
    (folder / "guard.json").write_text(json.dumps({"passed": True, "verdict": "ok"}))  # the TuSimple-only guard's
    with pytest.raises(DetectorError, match="guard failed: made by accuracy guard version 1, not 2"):
        Detector.from_weights(random_weights, device="cpu", backend="openvino-int8")
    assert "openvino-int8" not in [c.kind for c in fp32._candidates("auto")]
    (folder / "guard.json").write_text(json.dumps({"passed": True, "verdict": "ok",
                                                   "guard_version": cache.GUARD_VERSION}))
    int8 = Detector.from_weights(random_weights, device="cpu", backend="openvino-int8", threads=1)
    assert int8.backend_name == "openvino-int8"
    assert [c.kind for c in fp32._candidates("auto")][-1] == "openvino-int8"  # last: must be clearly faster


def test_missing_nncf_is_one_line_saying_what_to_install(monkeypatch, capsys):
    """Issue 21 item 7: on a fresh set-up the command ended in a ``ModuleNotFoundError: nncf``
    traceback. ``make setup`` installs it now; where it is absent the command says so in one line."""
    monkeypatch.setitem(sys.modules, "nncf", None)  # as if not installed: find_spec and import see nothing
    assert main(["--frames", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "quantize: error: needs nncf, not installed here: pip install nncf (make setup installs it)"


def _requirements(name: str) -> set[str]:
    """Package names of a requirements file, following its ``-r`` includes as pip does."""
    names = set()
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= _requirements(line[3:].strip())
        elif line:
            names.add(line.split("==")[0].split("[")[0])
    return names


def test_requirements_install_what_the_readme_commands_need():
    """``make setup`` installs requirements.txt: the quantisation command's nncf is in it, pinned. A ROS 2
    workspace installs requirements-workspace.txt beside its distribution: the same non-ROS packages, no
    ROS wheel that would shadow the distribution's rclpy or messages."""
    names, workspace = _requirements("requirements.txt"), _requirements("requirements-workspace.txt")
    pins = {line.split("==")[0] for line in (REPO_ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    assert {"nncf", "openvino"} <= names and {"nncf", "openvino"} <= pins
    assert {"openvino", "onnxruntime", "safetensors", "rosbags"} <= workspace <= names
    assert not {name for name in workspace if name.startswith("ros-")}


@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="nncf not installed (make setup installs it)")
def test_nncf_quantises_the_openvino_graph(tmp_path):
    """The command's NNCF step with the installed nncf and openvino (small input: the pairing of the
    two packages is what is checked): an INT8 model that OpenVINO loads and runs."""
    import openvino as ov

    model = build_model("enet_sad", num_lanes=4, input_size=(64, 160)).eval()
    plain, rewritten = tmp_path / "plain.onnx", tmp_path / "rewritten.onnx"
    export_graphs(model, plain, rewritten)
    batches = [np.random.default_rng(i).standard_normal((1, 3, 64, 160)).astype(np.float32) for i in range(2)]
    quantize_graph(rewritten, (1, 3, 64, 160), batches, tmp_path / "int8.xml")
    compiled = ov.Core().compile_model(str(tmp_path / "int8.xml"), "CPU")
    ops = ov.Core().read_model(str(tmp_path / "int8.xml")).get_ops()
    assert any(op.get_type_name() == "FakeQuantize" for op in ops)
    out = compiled.create_infer_request().infer({"image": batches[0]})
    assert out["seg_logits"].shape == (1, 5, 64, 160) and out["exist_prob"].shape == (1, 4)


def test_backends_import_nothing_above_them():
    """The house: a module imports downwards only. The quantisation command calibrates and guards with
    the Detector, so it lives with the commands (training/), not under backends/ below the Detector."""
    above = ("lanesad_ros.detector", "lanesad_ros.training", "lanesad_ros.evaluation", "lanesad_ros.ros")
    upward = []
    for path in sorted((REPO_ROOT / "lanesad_ros" / "backends").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            upward += [f"{path.name}: {name}" for name in names if name.startswith(above)]
    assert upward == []
