"""Detector: weights -> lanes through each backend, input validation, device handling."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, shared_path
from lanesad_ros.backends import selection
from lanesad_ros.backends.selection import CLEARLY_FASTER
from lanesad_ros.backends.torch_backend import TorchBackend
from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.lanes import LaneDetections
from lanesad_ros.model import build_model
from lanesad_ros.model.export import pool_indices_as_arithmetic

# Random weights give near-uniform maps: thresholds of 0 make every lane come out, so the
# plumbing (sizes, rows, mapping to source pixels) is exercised.
# Random weights on noise images: every lane reported, and the slot rules (test_slots.py) off,
# since such lanes cross each other at random; these tests are about the plumbing.
OPEN = {"exist_threshold": 0.0, "prob_threshold": 0.0, "geometry": False, "ground_check": False}


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory):
    """Keep exported ONNX graphs out of the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LANESAD_CACHE_DIR", str(tmp_path_factory.mktemp("onnx_cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch):
    """Backend measurements here count as made on a quiet machine (settled at once): the machine's
    load is an input of the choice, tested in test_backend_cache.py."""
    monkeypatch.setattr(selection.CpuShare, "others", lambda self: 0.0)


@pytest.fixture(scope="module")
def torch_detector(random_weights):
    return Detector.from_weights(random_weights, device="cpu", backend="torch", **OPEN)


@pytest.fixture(scope="module")
def ort_detector(random_weights):
    return Detector.from_weights(random_weights, device="cpu", backend="onnxruntime", **OPEN)


def as_numpy(x) -> np.ndarray:
    """A backend output (numpy, or a torch tensor from the torch backend) as a float32 host array."""
    return x if isinstance(x, np.ndarray) else x.float().cpu().numpy()


def road_image(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(1280, 720), (1640, 590)])
def test_detect_returns_lanes_in_source_pixels(torch_detector, size):
    width, height = size
    det = torch_detector.detect(road_image(width, height))
    assert isinstance(det, LaneDetections)
    assert (det.image_width, det.image_height) == (width, height)
    assert det.model_name == "enet_sad"
    assert det.weights_name == "enet_sad_random.safetensors"
    assert set(det.timings_ms) == {"preprocess", "inference", "postprocess"}
    assert det.latency_ms == pytest.approx(sum(det.timings_ms.values()))
    assert len(det.lanes) == 4
    crop = torch_detector.preprocessor.crop_rows(height)
    for lane in det.lanes:
        pts = lane.image_points
        assert pts.dtype == np.float32 and pts.shape[1] == 2 and len(pts) >= 2
        assert np.all((pts[:, 0] >= -0.5) & (pts[:, 0] <= width - 0.5))
        assert np.all((pts[:, 1] >= crop) & (pts[:, 1] <= height - 1))
        assert np.all(np.diff(pts[:, 1]) < 0)
        assert 0.0 <= lane.confidence <= 1.0


def test_backends_agree(torch_detector, ort_detector):
    assert torch_detector.backend_name == "torch-cpu"
    assert ort_detector.backend_name == "onnxruntime-cpu"
    batch = np.random.default_rng(1).standard_normal((1, 3, 144, 400)).astype(np.float32)
    seg_t, exist_t = torch_detector._backend(batch.copy())
    seg_o, exist_o = ort_detector._backend(batch.copy())
    np.testing.assert_allclose(as_numpy(seg_o), as_numpy(seg_t), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(as_numpy(exist_o), as_numpy(exist_t), atol=1e-5)
    image = road_image(1280, 720, seed=2)
    a, b = torch_detector.detect(image), ort_detector.detect(image)
    assert [lane.index for lane in a.lanes] == [lane.index for lane in b.lanes]
    for la, lb in zip(a.lanes, b.lanes, strict=True):
        assert la.confidence == pytest.approx(lb.confidence, abs=1e-5)
        np.testing.assert_allclose(la.image_points, lb.image_points, atol=0.5)


def test_auto_backend_times_the_candidates(random_weights):
    detector = Detector.from_weights(random_weights, device="cpu", backend="auto")
    expected = {"torch-cpu", "onnxruntime-cpu"} | ({"openvino-cpu"} if importlib.util.find_spec("openvino") else set())
    assert set(detector.backend_timings_ms) == expected
    assert detector.device == "cpu"
    # The first candidate in preference order is kept unless another is clearly faster.
    timings = detector.backend_timings_ms
    order = [name for name in ("openvino-cpu", "torch-cpu", "onnxruntime-cpu") if name in timings]
    expected_choice = order[0]
    for name in order[1:]:
        if timings[name] * CLEARLY_FASTER <= timings[expected_choice]:
            expected_choice = name
    assert detector.backend_name == expected_choice
    assert detector.backend_reason.startswith("measured (") and expected_choice in detector.backend_reason


def test_auto_choice_is_remembered_per_weights_and_size(random_weights, tmp_path, monkeypatch):
    """Issue 15 item 8: the same machine, weights and input size get the same backend without
    re-timing; a re-measure happens only when asked (argument or environment) or for other weights."""
    monkeypatch.setenv("LANESAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LANESAD_REMEASURE_BACKEND", raising=False)
    first = Detector.from_weights(random_weights, device="cpu", backend="auto")
    assert first.backend_reason.startswith("measured (no remembered choice")

    def no_timing(*args, **kwargs):
        raise AssertionError("a remembered choice must not time the backends again")

    monkeypatch.setattr(selection, "time_backend", no_timing)
    for _ in range(2):
        again = Detector.from_weights(random_weights, device="cpu", backend="auto")
        assert again.backend_name == first.backend_name
        assert again.backend_reason.startswith("remembered choice from")
        assert again.backend_timings_ms == pytest.approx(first.backend_timings_ms)
    with pytest.raises(AssertionError, match="must not time"):
        Detector.from_weights(random_weights, device="cpu", backend="auto", remeasure=True)
    monkeypatch.setenv("LANESAD_REMEASURE_BACKEND", "1")
    with pytest.raises(AssertionError, match="must not time"):
        Detector.from_weights(random_weights, device="cpu", backend="auto")
    monkeypatch.delenv("LANESAD_REMEASURE_BACKEND")
    other = tmp_path / "other.safetensors"  # same tensors, other metadata: another key
    other.write_bytes(random_weights.read_bytes())
    meta = json.loads(random_weights.with_suffix(".json").read_text())
    other.with_suffix(".json").write_text(json.dumps(dict(meta, crop_top=0.25)))
    with pytest.raises(AssertionError, match="must not time"):
        Detector.from_weights(other, device="cpu", backend="auto")


def test_background_choice_answers_on_torch_then_switches(random_weights, tmp_path, monkeypatch):
    """The node's cold start: torch answers at once; the measured choice takes over and is remembered."""
    monkeypatch.setenv("LANESAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LANESAD_REMEASURE_BACKEND", raising=False)
    chosen = []
    detector = Detector.from_weights(random_weights, device="cpu", backend="auto", background=True,
                                     on_backend_chosen=chosen.append, **OPEN)
    assert detector.backend_name == "torch-cpu"
    assert "answers while the candidates are measured" in detector.backend_reason
    assert not detector.backend_choice_thread.is_alive(), "the caller starts the measurement"
    detector.start_backend_choice()
    detector.start_backend_choice()  # once only
    image = road_image(1280, 720, seed=3)
    early = detector.detect(image)  # while the thread measures
    detector.backend_choice_thread.join(timeout=120)
    assert chosen == [detector] and detector.backend_reason.endswith("(measured in the background)")
    assert detector.backend_name in detector.backend_timings_ms
    late = detector.detect(image)
    assert [lane.index for lane in late.lanes] == [lane.index for lane in early.lanes]
    again = Detector.from_weights(random_weights, device="cpu", backend="auto", background=True)
    assert again.backend_choice_thread is None and again.backend_name == detector.backend_name
    assert again.backend_reason.startswith("remembered choice from")


def test_cached_cpu_start_up_skips_torch(random_weights, tmp_path):
    """With the graph and the choice cached, a CPU start-up neither imports torch nor rebuilds the network."""
    env = dict(os.environ, LANESAD_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO_ROOT))
    script = ("import sys; from lanesad_ros.detector import Detector; "
              f"d = Detector.from_weights({str(random_weights)!r}, device='cpu', backend='onnxruntime'); "
              "d.detect(__import__('numpy').zeros((720, 1280, 3), 'uint8')); "
              "print(d.backend_name, 'torch' in sys.modules, sorted(d.startup_phases_ms))")
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr[-2000:]
    assert runs[0].stdout.split()[:2] == ["onnxruntime-cpu", "True"]  # cold: loads and exports
    assert "onnx_export" in runs[0].stdout
    assert runs[1].stdout.split()[:2] == ["onnxruntime-cpu", "False"], runs[1].stdout
    assert "load_weights" not in runs[1].stdout and "onnx_export" not in runs[1].stdout


@pytest.fixture(scope="module")
def ov_detector(random_weights):
    pytest.importorskip("openvino")
    return Detector.from_weights(random_weights, device="cpu", backend="openvino", threads=1, **OPEN)


def test_openvino_agrees_with_torch(torch_detector, ov_detector):
    """Same tolerance as ONNX Runtime: fp32 throughout, only the summation order differs."""
    assert ov_detector.backend_name == "openvino-cpu" and ov_detector.device == "cpu"
    batch = np.random.default_rng(11).standard_normal((1, 3, 144, 400)).astype(np.float32)
    seg_t, exist_t = torch_detector._backend(batch.copy())
    seg_v, exist_v = ov_detector._backend(batch.copy())
    np.testing.assert_allclose(as_numpy(seg_v), as_numpy(seg_t), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(as_numpy(exist_v), as_numpy(exist_t), atol=1e-5)
    images = [road_image(1280, 720, seed=12), road_image(1640, 590, seed=13)]
    for image, got in zip(images, ov_detector.detect_batch(images), strict=True):  # batch 2: a second compiled shape
        expected = torch_detector.detect(image)
        assert [lane.index for lane in got.lanes] == [lane.index for lane in expected.lanes]
        for a, b in zip(got.lanes, expected.lanes, strict=True):
            assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
            np.testing.assert_allclose(a.image_points, b.image_points, atol=0.5)


def test_openvino_missing_is_a_clear_error(random_weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    with pytest.raises(DetectorError, match="pip install openvino"):
        Detector.from_weights(random_weights, device="cpu", backend="openvino")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else object())
    assert "openvino-cpu" not in Detector.from_weights(random_weights, device="cpu").backend_timings_ms


class _PoolWithIndices(torch.nn.Module):
    """max_pool2d with indices, as ENet's encoder exports it, returning the indices themselves."""

    def forward(self, x):
        pooled, indices = torch.nn.functional.max_pool2d(x, 2, stride=2, return_indices=True)
        return pooled, indices


def test_pool_indices_rewrite_gives_the_same_indices(tmp_path):
    import onnx
    import onnxruntime as ort

    path = tmp_path / "pool.onnx"
    x = torch.randn(2, 3, 9, 13)
    x[0, :, :4] = 0.25  # ties inside windows: the first maximum in row-major order must win
    x[1, 1] = torch.round(x[1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, as export_onnx uses it
        torch.onnx.export(_PoolWithIndices(), (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["pooled", "indices"], dynamic_axes={"x": {0: "n"}})
    rewritten = pool_indices_as_arithmetic(onnx.load(str(path)))
    onnx.checker.check_model(rewritten)
    assert not [n for n in rewritten.graph.node if n.op_type == "MaxPool" and len(n.output) > 1]
    original = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fast = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
    pooled, indices = fast.run(None, {"x": x.numpy()})
    expected_pooled, expected_indices = _PoolWithIndices()(x)
    np.testing.assert_array_equal(indices, expected_indices.numpy())
    np.testing.assert_array_equal(pooled, expected_pooled.numpy())
    for got, want in zip(fast.run(None, {"x": x[:1].numpy()}), original.run(None, {"x": x[:1].numpy()}), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("image, problem", [
    (np.zeros((720, 1280, 3), np.float32), "uint8"),
    (np.zeros((720, 1280), np.uint8), "HxWx3"),
    (np.zeros((720, 1280, 4), np.uint8), "HxWx3"),
    (np.zeros((0, 1280, 3), np.uint8), "empty"),
    (np.zeros((720, 0, 3), np.uint8), "empty"),
    ([[0, 0, 0]], "numpy array"),
])
def test_bad_images_raise(torch_detector, image, problem):
    with pytest.raises(DetectorError, match=problem):
        torch_detector.detect(image)


def test_huge_and_non_contiguous_images(torch_detector):
    det = torch_detector.detect(np.full((6000, 8000, 3), 90, np.uint8))
    assert (det.image_width, det.image_height) == (8000, 6000)
    for lane in det.lanes:
        assert lane.image_points[:, 0].max() <= 8000 and lane.image_points[:, 1].max() <= 5999
    for tiny in (np.zeros((1, 1, 3), np.uint8), np.zeros((2, 3, 3), np.uint8)):
        det = torch_detector.detect(tiny)
        assert all(np.all(lane.image_points[:, 1] <= tiny.shape[0] - 1) for lane in det.lanes)
    image = road_image(1280, 720, seed=3)
    flipped = image[:, :, ::-1]  # an RGB view: negative strides
    expected = torch_detector.detect(np.ascontiguousarray(flipped))
    got = torch_detector.detect(flipped)
    assert [lane.index for lane in got.lanes] == [lane.index for lane in expected.lanes]
    for a, b in zip(got.lanes, expected.lanes, strict=True):
        np.testing.assert_array_equal(a.image_points, b.image_points)


def test_detect_batch_matches_single_frames(torch_detector):
    images = [road_image(1280, 720, seed=4), road_image(1640, 590, seed=5)]
    batch = torch_detector.detect_batch(images)
    for image, det in zip(images, batch, strict=True):
        single = torch_detector.detect(image)
        assert (det.image_width, det.image_height) == (image.shape[1], image.shape[0])
        for a, b in zip(det.lanes, single.lanes, strict=True):
            np.testing.assert_allclose(a.image_points, b.image_points, atol=0.5)
    assert torch_detector.detect_batch([]) == []


def test_thresholds_apply_and_can_change(random_weights):
    detector = Detector.from_weights(random_weights, device="cpu", backend="torch", exist_threshold=1.0)
    assert detector.detect(road_image(1280, 720)).lanes == []
    detector.set_postprocess(**OPEN)
    assert len(detector.detect(road_image(1280, 720)).lanes) == 4
    with pytest.raises(DetectorError, match="unknown postprocess option"):
        detector.set_postprocess(exist_treshold=0.2)


def test_weights_problems_name_the_file(random_weights, tmp_path):
    with pytest.raises(DetectorError, match="enet_sad_random.safetensors.*6 are needed"):
        Detector.from_weights(random_weights, num_lanes=6)
    missing = tmp_path / "nothing_here.safetensors"
    with pytest.raises(DetectorError, match="nothing_here"):
        Detector.from_weights(missing)
    with pytest.raises(DetectorError, match="device"):
        Detector.from_weights(random_weights, device="tpu")
    with pytest.raises(DetectorError, match="backend"):
        Detector.from_weights(random_weights, backend="tensorflow")


def test_from_model_leaves_the_training_model_alone(random_weights, torch_detector):
    from lanesad_ros.model.weights import load_weights

    model, metadata = load_weights(random_weights)
    model.train()
    detector = Detector.from_model(model, metadata, **OPEN)
    assert detector.backend_name == "torch-cpu" and detector.weights_name == "<in-memory>"
    image = road_image(1280, 720, seed=6)
    got, expected = detector.detect(image), torch_detector.detect(image)
    assert model.training and next(model.parameters()).dtype == torch.float32
    assert [lane.index for lane in got.lanes] == [lane.index for lane in expected.lanes]
    for a, b in zip(got.lanes, expected.lanes, strict=True):
        np.testing.assert_allclose(a.image_points, b.image_points, atol=1e-3)
    assert Detector.from_model(model, metadata, device="cpu").device == "cpu"
    with pytest.raises(DetectorError, match="does not match the model"):
        Detector.from_model(model, {"num_lanes": 6})


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_requested_but_absent(random_weights):
    with pytest.raises(DetectorError, match="CUDA is not available"):
        Detector.from_weights(random_weights, device="cuda", backend="torch")
    with pytest.raises(DetectorError, match="CUDA is not available"):
        Detector.from_weights(random_weights, device="cuda:0", backend="auto")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_close_to_cpu_fp32(random_weights, torch_detector):
    gpu = Detector.from_weights(random_weights, device="cuda", backend="torch", **OPEN)
    assert gpu.backend_name == "torch-cuda-fp16"
    batch = np.random.default_rng(7).standard_normal((1, 3, 144, 400)).astype(np.float32)
    seg_g, exist_g = gpu._backend(batch.copy())
    seg_c, exist_c = torch_detector._backend(batch.copy())
    prob_g = torch.softmax(seg_g.float().cpu(), 1)
    prob_c = torch.softmax(seg_c, 1)
    assert (prob_g - prob_c).abs().max().item() < 2e-2
    np.testing.assert_allclose(exist_g.float().cpu().numpy(), exist_c.numpy(), atol=1e-2)
    det = gpu.detect(road_image(1280, 720))
    assert len(det.lanes) == 4


def test_cuda_graphs_only_where_they_can_be_replayed(random_weights):
    """Graphs are captured for a CUDA model the backend owns, never on the CPU or for a shared model."""
    model = build_model("enet_sad", num_lanes=4, input_size=(144, 400))
    assert not TorchBackend(model, "cpu", own_model=True).cuda_graphs
    with pytest.raises(ValueError, match="needs a CUDA device and a model the backend owns"):
        TorchBackend(model, "cpu", own_model=True, cuda_graphs=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replay_matches_eager_and_returns_fresh_tensors(random_weights):
    model = build_model("enet_sad", num_lanes=4, input_size=(144, 400)).eval()
    graphed = TorchBackend(model, "cuda", own_model=True)
    eager = TorchBackend(model, "cuda", own_model=True, cuda_graphs=False)
    assert graphed.cuda_graphs and not eager.cuda_graphs
    rng = np.random.default_rng(8)
    a, b = (rng.standard_normal((1, 3, 144, 400)).astype(np.float32) for _ in range(2))
    first = graphed(a)
    kept = [t.clone() for t in first]
    second = graphed(b)  # a replay must not overwrite what the previous call returned
    for got, want in zip(first, kept, strict=True):
        assert torch.equal(got, want)
    for got, want in zip(second, eager(b), strict=True):
        assert (got.float() - want.float()).abs().max().item() < 1e-2
    pair = rng.standard_normal((2, 3, 144, 400)).astype(np.float32)  # another shape: its own graph
    for got, want in zip(graphed(pair), eager(pair), strict=True):
        assert got.shape == want.shape and (got.float() - want.float()).abs().max().item() < 1e-2
    assert len(graphed._graphs) == 2


def test_camera_adds_ground_points_and_tracker_smooths(random_weights):
    import math

    from lanesad_ros.camera import CameraModel, GroundProjector, Mounting
    from lanesad_ros.tracking import LaneTracker

    detector = Detector.from_weights(random_weights, device="cpu", backend="torch", **OPEN)
    camera = CameraModel(K=[1000, 0, 640, 0, 1000, 360, 0, 0, 1], dist=[0, 0, 0, 0, 0], width=1280, height=720)
    detector.camera = GroundProjector(camera, Mounting(height_m=1.5, pitch_rad=math.radians(10)))
    detector.tracker = LaneTracker()
    image = road_image(1280, 720, seed=8)
    first = detector.detect(image)
    assert len(first.lanes) == 4
    for lane in first.lanes:
        # Every reported row is below the horizon (row ~184 here; the crop ends at 216),
        # so every point reaches the road.
        assert lane.ground_points.shape == (len(lane.image_points), 3)
        assert np.all(lane.ground_points[:, 0] > 0) and np.all(lane.ground_points[:, 2] == 0)
    assert len(detector.detect(image).lanes) == 4
    assert set(detector.tracker.tracks) == {0, 1, 2, 3}
    # The images' stamps reach the tracker (it ages tracks by them); one stamp per image.
    detector.detect(image, stamp_s=20.0)
    assert detector.tracker.stamp_s == 20.0
    assert len(detector.detect_batch([image, image], [19.0, 19.5])[1].lanes) == 4  # back in time: tracks restart
    assert detector.tracker.stamp_s == 19.5 and set(detector.tracker.tracks) == {0, 1, 2, 3}
    with pytest.raises(DetectorError, match="1 stamps for 2 images"):
        detector.detect_batch([image, image], [1.0])


def test_weights_metadata_recommends_postprocess_and_options_override(tmp_path):
    from lanesad_ros.model.weights import save_weights

    path = tmp_path / "tuned.safetensors"
    save_weights(build_model("enet_sad", num_lanes=4, input_size=(64, 128)), path,
                 {"postprocess": {"prob_threshold": 0.2}})
    assert Detector.from_weights(path, backend="torch").config.prob_threshold == pytest.approx(0.2)
    overridden = Detector.from_weights(path, backend="torch", prob_threshold=0.4)
    assert overridden.config.prob_threshold == pytest.approx(0.4)
    assert overridden.default_config.prob_threshold == pytest.approx(0.2)

    bad = tmp_path / "bad.safetensors"
    save_weights(build_model("enet_sad", num_lanes=4, input_size=(64, 128)), bad,
                 {"postprocess": {"no_such_option": 1}})
    with pytest.raises(DetectorError, match="bad.safetensors"):
        Detector.from_weights(bad, backend="torch")


def test_decoding_network_outputs_gives_what_detect_gives():
    """``network_outputs`` + ``decode`` (threshold tuning decodes one network pass many times) is
    the same lane path as ``detect``."""
    image = cv2.imread(str(shared_path("tusimple") / "clips/lanenet/0000/20.jpg"))
    detector = Detector.from_weights(device="cpu", backend="torch")
    lanes = detector.decode(detector.network_outputs(image), (image.shape[1], image.shape[0]))
    expected = detector.detect(image).lanes
    assert len(lanes) == len(expected) > 0
    for a, b in zip(lanes, expected, strict=True):
        assert a.slot == b.slot
        np.testing.assert_allclose(a.image_points, b.image_points, atol=1e-3)
