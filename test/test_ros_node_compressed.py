"""The lane detector node over real DDS with sensor_msgs/CompressedImage input.

Real road frames go out as the JPEG files they are. The node is started with
``device:=cuda``: without CUDA it must warn, run on the CPU and say so in /diagnostics. It
loads the shipped default weights when they exist (then frames with lanes must get lanes),
otherwise an untrained network (plumbing only).
"""
from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from conftest import SHARED_DATA
from rosutil import require_ros_messages, ros_env

require_ros_messages()

import cv2  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lanesad_ros.ros.convert import bgr_to_compressed_msg  # noqa: E402
from lanesad_ros.weights import default_weights_path  # noqa: E402
from node_harness import (  # noqa: E402
    LOW_THRESHOLDS,
    NodeProcess,
    RosClient,
    check_answer,
    level_value,
    real_frame_paths,
    synthetic_frames,
)

TRAINED = default_weights_path().exists()


def jpeg_file_message(path, fmt: str = "jpeg") -> CompressedImage:
    return CompressedImage(header=Header(frame_id=path.stem), format=fmt, data=path.read_bytes())


@pytest.fixture(scope="module")
def weights(random_weights):
    return default_weights_path() if TRAINED else random_weights


@pytest.fixture(scope="module")
def node(domain_id, weights, tmp_path_factory):
    env = ros_env(domain_id)
    proc = NodeProcess(env, tmp_path_factory.mktemp("node") / "lane_detector_compressed.log",
                       f"weights:={weights}", "device:=cuda", "backend:=torch", "input_compressed:=true",
                       "image_topic:=/test_camera/image_raw", "camera_info_topic:=/test_camera/camera_info",
                       "pitch:=0.05", "camera_height:=1.6", "ground_frame_id:=vehicle",
                       *(() if TRAINED else LOW_THRESHOLDS))
    yield proc
    proc.stop(signal.SIGKILL if proc.alive() else signal.SIGINT)


@pytest.fixture(scope="module")
def client(node, domain_id):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
        ros = RosClient(domain_id, "/test_camera/image_raw", compressed=True)
        try:
            ros.wait_ready(node)
            yield ros
        finally:
            try:
                node.stop(signal.SIGKILL if node.alive() else None)  # before our participant closes
            finally:
                ros.close()


def test_real_jpeg_frames_each_get_their_lane_array(node, client, weights):
    paths = real_frame_paths()
    if not paths:
        pytest.skip(f"shared data not available: {SHARED_DATA}")
    for path in paths:
        msg = jpeg_file_message(path)
        bgr = cv2.imread(str(path))
        check_answer(client.request(msg), msg, bgr.shape[1], bgr.shape[0], weights.name)


def test_lanes_where_the_frame_has_them(node, client):
    """Every labelled TuSimple frame has at least the ego lane's two boundaries."""
    if not TRAINED:
        pytest.skip(f"shipped default weights not trained yet ({default_weights_path()} missing)")
    labels = SHARED_DATA / "tusimple" / "labels.json"
    if not labels.exists():
        pytest.skip(f"shared data not available: {labels}")
    for line in labels.read_text().splitlines():
        label = json.loads(line)
        answer = client.request(jpeg_file_message(SHARED_DATA / "tusimple" / label["raw_file"]))
        labelled = sum(any(x >= 0 for x in lane) for lane in label["lanes"])
        slots = {lane.slot for lane in answer.lanes}
        assert labelled >= 2 and {1, 2} <= slots, (label["raw_file"], slots)
        for lane in answer.lanes:  # the ego lane's boundaries reach down towards the car
            if lane.slot in (1, 2):
                assert max(p.y for p in lane.image_points) > 500, (label["raw_file"], lane.slot)


@pytest.mark.parametrize("fmt,codec", [("jpeg", "jpeg"), ("rgb8; jpeg compressed bgr8", "jpeg"), ("png", "png"),
                                       ("bgr8; png compressed bgr8", "png"), ("", "png")])
def test_synthetic_frames_in_each_format(node, client, weights, fmt, codec):
    (bgr,) = synthetic_frames(1, 960, 540)
    msg = bgr_to_compressed_msg(bgr, Header(frame_id="synthetic"), codec)
    msg.format = fmt
    check_answer(client.request(msg), msg, 960, 540, weights.name)


def test_bad_compressed_inputs_are_counted(node, client):
    started = time.monotonic()
    real = real_frame_paths()
    jpeg = real[0].read_bytes() if real else bytes(bgr_to_compressed_msg(synthetic_frames(1)[0], Header()).data)
    ok, huge = cv2.imencode(".jpg", np.zeros((6000, 8000, 3), np.uint8))
    assert ok
    bad = {
        "corrupt_image": CompressedImage(format="jpeg", data=jpeg[: len(jpeg) // 2]),
        "zero_size": CompressedImage(format="jpeg", data=b""),
        "unsupported_encoding": CompressedImage(format="tiff", data=b"II*\x00" + bytes(100)),
        "too_large": CompressedImage(format="jpeg", data=huge.tobytes()),
    }
    good = bgr_to_compressed_msg(synthetic_frames(1, 640, 360)[0], Header(frame_id="camera"))
    for msg in bad.values():
        msg.header.stamp = client.stamp()
        client.publisher.publish(msg)
        time.sleep(0.3)  # the idle worker takes it before the good frame replaces it
        client.request(good)
    assert node.alive()
    values = client.diagnostics_after(started, lambda v: all(int(v.get(f"errors.{k}", 0)) >= 1 for k in bad))
    assert int(values["errors"]) >= len(bad)
    log = node.log()
    for text in ("corrupt JPEG: truncated", "zero-size image", "unsupported compressed format 'tiff'",
                 "image 8000x6000 has 48000000 pixels, above the limit"):
        assert text in log, text
    assert "Traceback" not in log


def test_cuda_request_falls_back_to_cpu_and_says_so(node, client):
    import torch

    values = client.diagnostics_after(time.monotonic())
    assert values["requested_device"] == "cuda"
    if torch.cuda.is_available():
        assert values["device"] == "cuda" and values["device_note"] == ""
        return
    assert values["device"] == "cpu" and values["backend"].endswith("cpu")
    assert "cuda requested but unavailable" in values["device_note"]
    assert "cuda requested but unavailable, running on cpu" in node.log()
    levels = {level for _, v, level in client.diagnostics if v["device"] == "cpu"}
    assert levels == {level_value(DiagnosticStatus.WARN)}, "a CUDA fallback is a standing warning"
    assert values["input_topic"] == "/test_camera/image_raw/compressed"


def test_camera_info_topic_gives_ground_points(node, client):
    from sensor_msgs.msg import CameraInfo

    from lanesad_ros.ros.convert import point_cloud_to_xyz

    assert client.diagnostics_after(time.monotonic())["ground_points"] == "false"  # no CameraInfo yet
    info = CameraInfo(width=1280, height=720, distortion_model="plumb_bob",
                      d=[-0.24, -0.05, -0.001, 0.0, 0.02],
                      k=[1157.0, 0.0, 667.0, 0.0, 1152.0, 386.0, 0.0, 0.0, 1.0])
    publisher = client.node.create_publisher(CameraInfo, "/test_camera/camera_info", 10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # best-effort subscriber: repeat until the node took it
        info.header.stamp = client.stamp()
        publisher.publish(info)
        if client.diagnostics_after(time.monotonic(), timeout=3)["ground_points"] == "true":
            break
    else:
        pytest.fail(f"CameraInfo never taken:\n{node.log()[-2000:]}")
    assert "camera model from /test_camera/camera_info: 1280x720" in node.log()
    path = real_frame_paths()[0] if real_frame_paths() else None
    if path is None:
        pytest.skip("shared data not available")
    msg = jpeg_file_message(path)
    answer = client.request(msg)
    key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
    assert client.wait_for(lambda: [c for c in client.points
                                    if (c.header.stamp.sec, c.header.stamp.nanosec) == key], 10)
    cloud = [c for c in client.points if (c.header.stamp.sec, c.header.stamp.nanosec) == key][0]
    assert cloud.header.frame_id == "vehicle"
    ground = point_cloud_to_xyz(cloud)
    assert len(ground) == sum(len(lane.ground_points) for lane in answer.lanes)
    assert answer.lanes and answer.ground_frame_id == "vehicle"
    for lane in answer.lanes:
        xyz = np.array([(p.x, p.y, p.z) for p in lane.ground_points])
        assert len(xyz) and (xyz[:, 0] > 0).all() and (xyz[:, 0] <= 100).all() and np.allclose(xyz[:, 2], 0)


def test_camera_info_roi_and_a_frame_it_does_not_describe(node, client):
    """Issue 21.2: a CameraInfo whose roi is the bottom half of the calibrated 1280x720 image. Its
    1280x360 frames get the ground points of the full-image pixels 360 rows lower; a 1280x720
    frame (which that CameraInfo does not describe) keeps its image lanes, gets no ground points,
    and is counted and logged."""
    from sensor_msgs.msg import CameraInfo, RegionOfInterest

    from lanesad_ros.camera import CameraModel, GroundProjector, Mounting

    info = CameraInfo(width=1280, height=720, distortion_model="plumb_bob", d=[-0.24, -0.05, -0.001, 0.0, 0.02],
                      k=[1157.0, 0.0, 667.0, 0.0, 1152.0, 386.0, 0.0, 0.0, 1.0],
                      roi=RegionOfInterest(x_offset=0, y_offset=360, width=1280, height=360))
    publisher = client.node.create_publisher(CameraInfo, "/test_camera/camera_info", 10)
    deadline = time.monotonic() + 20
    while "images 1280x360 (roi, binning applied)" not in node.log():  # best effort: repeat until taken
        assert time.monotonic() < deadline, f"CameraInfo never taken:\n{node.log()[-2000:]}"
        publisher.publish(info)
        time.sleep(0.5)
    paths = real_frame_paths()
    full = cv2.imread(str(paths[0])) if paths else synthetic_frames(1)[0]
    full = cv2.resize(full, (1280, 720))
    # The same camera (node parameters pitch 0.05, height 1.6), on full-image pixels.
    full_camera = GroundProjector(CameraModel(np.reshape(info.k, (3, 3)), info.d, 1280, 720),
                                  Mounting(height_m=1.6, pitch_rad=0.05))
    answer = client.request(CompressedImage(header=Header(frame_id="bottom_half"), format="jpeg",
                                            data=cv2.imencode(".jpg", full[360:])[1].tobytes()))
    assert answer.image_height == 360
    assert any(len(lane.ground_points) for lane in answer.lanes), "lanes on the road half of the frame"
    for lane in answer.lanes:
        pixels = np.array([(p.x, p.y + 360.0) for p in lane.image_points])
        expected = full_camera.image_to_ground(pixels)
        found = np.array([(p.x, p.y, p.z) for p in lane.ground_points]).reshape(-1, 3)
        np.testing.assert_allclose(found, expected, rtol=1e-3, atol=1e-3)
    since = time.monotonic()
    answer = client.request(CompressedImage(header=Header(frame_id="not_described"), format="jpeg",
                                            data=cv2.imencode(".jpg", full)[1].tobytes()))
    assert answer.image_height == 720 and all(len(lane.ground_points) == 0 for lane in answer.lanes)
    assert answer.ground_frame_id == "", "no camera model for this image size"
    values = client.diagnostics_after(since, lambda v: int(v.get("errors.camera_size", 0)) >= 1)
    assert values["ground_points"] == "true" and node.alive()
    assert "no ground points: a 1280x720 frame is not the 1280x360 calibrated image resized" in node.log()


def test_sigint_shuts_the_node_down_cleanly(node, client):
    assert node.stop(signal.SIGINT) == 0, node.log()[-3000:]
    assert "Traceback" not in node.log()
