"""INT8 path: the accuracy guard's arithmetic, and that only a model that passed it is offered."""
from __future__ import annotations

import ast
import importlib.util
import json
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from lanesad_ros.backends import cache
from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot
from lanesad_ros.model import build_model
from lanesad_ros.model.export import export_graphs
from lanesad_ros.training.quantize import (
    MAX_ACCURACY_DROP,
    lane_shifts,
    main,
    quantize_graph,
    run_guard,
    validation_frames,
)

ROWS = np.arange(160, 720, 10, dtype=np.float32)


def detections(xs_by_index: dict[int, float]) -> LaneDetections:
    """Vertical lanes at the given x (source px), one per lane index, on the TuSimple rows."""
    lanes = [Lane(slot=LaneSlot.from_index(i), index=i, confidence=0.9,
                  image_points=np.stack([np.full(ROWS.shape, x, np.float32), ROWS[::-1]], 1))
             for i, x in xs_by_index.items()]
    return LaneDetections(lanes=lanes, image_width=1280, image_height=720)


class Replay:
    """A stand-in detector answering each frame with the next prepared LaneDetections."""

    def __init__(self, answers):
        self.answers = list(answers)

    def detect(self, image):
        return self.answers.pop(0)


def labelled(tmp_path, xs: list[float], name: str) -> dict:
    image = tmp_path / f"{name}.jpg"
    cv2.imwrite(str(image), np.zeros((720, 1280, 3), np.uint8))
    return {"raw_file": f"{name}.jpg", "h_samples": ROWS.tolist(), "lanes": [[float(x)] * len(ROWS) for x in xs],
            "_image": image}


def test_lane_shift_compares_the_same_lane_on_common_rows():
    a, b = detections({0: 400.0, 1: 600.0}), detections({0: 403.0, 1: 600.5, 2: 900.0})
    assert sorted(lane_shifts(a, b, ROWS)) == pytest.approx([0.5] * len(ROWS) + [3.0] * len(ROWS))


def test_guard_passes_small_moves_and_fails_a_lost_lane_or_a_large_move(tmp_path):
    frames = [labelled(tmp_path, [400.0, 600.0], "f0"), labelled(tmp_path, [420.0, 640.0], "f1")]
    exact = [detections({0: 400.0, 1: 600.0}), detections({0: 420.0, 1: 640.0})]
    near = [detections({0: 401.0, 1: 601.0}), detections({0: 421.0, 1: 641.0})]
    record = run_guard(Replay(exact), Replay(near), frames)
    assert record["passed"] and record["median_shift_px"] == pytest.approx(1.0)
    assert record["accuracy_fp32"] == record["accuracy_int8"] == pytest.approx(1.0)
    lost = [detections({0: 400.0}), detections({0: 420.0, 1: 640.0})]  # one lane of four missing
    record = run_guard(Replay(exact), Replay(lost), frames)
    assert not record["passed"] and record["accuracy_fp32"] - record["accuracy_int8"] > MAX_ACCURACY_DROP
    moved = [detections({0: 408.0, 1: 608.0}), detections({0: 428.0, 1: 648.0})]  # within TuSimple's 20 px
    record = run_guard(Replay(exact), Replay(moved), frames)
    assert record["accuracy_int8"] == pytest.approx(1.0) and not record["passed"]
    assert "median lane shift 8.00 px" in record["verdict"]


def test_validation_frames_follow_the_split(tmp_path):
    for clip in ("clips/a/1", "clips/b/2"):
        (tmp_path / clip).mkdir(parents=True)
        (tmp_path / clip / "20.jpg").write_bytes(b"")
    lines = [json.dumps({"raw_file": f"{c}/20.jpg", "h_samples": [160], "lanes": [[1.0]]})
             for c in ("clips/a/1", "clips/b/2")]
    (tmp_path / "labels.json").write_text("\n".join(lines) + "\n")
    (tmp_path / "val.txt").write_text("# held out\nclips/b/2\n")
    frames, described = validation_frames(tmp_path / "labels.json", tmp_path / "val.txt")
    assert [f["raw_file"] for f in frames] == ["clips/b/2/20.jpg"] and "1 clips" in described
    frames, described = validation_frames(tmp_path / "labels.json", None)
    assert len(frames) == 2 and described.startswith("2 frames: all of")


def test_int8_offered_only_after_a_passed_guard(random_weights, tmp_path, monkeypatch):
    ov = pytest.importorskip("openvino")
    monkeypatch.setenv("LANESAD_CACHE_DIR", str(tmp_path / "cache"))
    fp32 = Detector.from_weights(random_weights, device="cpu", backend="openvino", threads=1)
    folder = cache.int8_dir(fp32.artefact_base())
    folder.mkdir(parents=True)
    # The fp32 graph stands in for a quantised one: this checks the offering, not the quantisation.
    ov.save_model(ov.Core().read_model(str(fp32.onnx_path(pooling_indices=False))), str(folder / "model.xml"))
    (folder / "guard.json").write_text(json.dumps({"passed": False, "verdict": "accuracy dropped"}))
    with pytest.raises(DetectorError, match="guard failed: accuracy dropped"):
        Detector.from_weights(random_weights, device="cpu", backend="openvino-int8")
    assert "openvino-int8" not in [c.kind for c in fp32._candidates("auto")]
    (folder / "guard.json").write_text(json.dumps({"passed": True, "verdict": "ok"}))
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


def test_requirements_install_what_the_readme_commands_need():
    """``make setup`` installs requirements.txt: the quantisation command's nncf is in it, pinned."""
    names = {line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()}
    pins = {line.split("==")[0] for line in (REPO_ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    assert {"nncf", "openvino"} <= names and {"nncf", "openvino"} <= pins


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
