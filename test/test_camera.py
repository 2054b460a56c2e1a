"""Camera model and flat-ground projection, checked with a real calibration (Udacity chessboards)."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import shared_path
from lanesad_ros.camera import (
    CameraModel,
    GroundProjector,
    ImageSizeMismatch,
    Mounting,
    calibrate_chessboard,
    mounting_from_straight_lanes,
)
from lanesad_ros.ros.ground import GroundModels

HALF_LANE = 1.85  # m: two boundaries of a 3.7 m lane
LINE_XS = np.linspace(5.0, 40.0, 36)  # m ahead: where parallel_lines samples the ground lines


@pytest.fixture(scope="module")
def udacity_calibration():
    """Calibrate once from the 20 real chessboard views (three lack a full board and are skipped).

    A few of the files are 1281x721; their top-left 1280x720 crop is the same camera (a crop
    from the origin leaves K unchanged).
    """
    folder = shared_path("udacity", "camera_cal")
    files = sorted(folder.glob("calibration*.jpg"))
    if len(files) < 10:
        pytest.skip(f"expected the 20 Udacity chessboard images in {folder}")
    images = [cv2.imread(str(f))[:720, :1280] for f in files]
    return calibrate_chessboard(images, pattern=(9, 6), detect_scale=0.5)


def test_calibration_of_the_real_camera(udacity_calibration):
    camera, rms = udacity_calibration
    assert (camera.width, camera.height) == (1280, 720)
    assert rms < 1.0  # px; about 0.85 here
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    # A ~60 degree lens with its centre near the image centre and clear barrel distortion.
    assert 1050 < fx < 1250 and abs(fx - fy) / fx < 0.02
    assert abs(cx - 640) < 60 and abs(cy - 360) < 60
    assert camera.dist[0] < -0.15


def parallel_lines(projector, xs=LINE_XS):
    """Back-projected images of the two ground lines y = +-1.85 m: (left (M,3), right (M,3), pixels)."""
    out, pixels = [], []
    for y in (HALF_LANE, -HALF_LANE):
        ground = np.stack([xs, np.full_like(xs, y), np.zeros_like(xs)], axis=1)
        px = projector.ground_to_image(ground)
        assert np.all(np.isfinite(px))
        assert np.all((px[:, 0] >= 0) & (px[:, 0] < 1280) & (px[:, 1] >= 0) & (px[:, 1] < 720)), "line leaves the image"
        pixels.append(px)
        out.append(projector.image_to_ground(px))
    return out[0], out[1], pixels


def test_straight_parallel_lines_come_back_parallel(udacity_calibration):
    camera, _ = udacity_calibration
    projector = GroundProjector(camera, Mounting(height_m=1.2, pitch_rad=math.radians(2.0)))
    left, right, pixels = parallel_lines(projector)
    assert len(left) == len(right) == 36
    for line, y in ((left, HALF_LANE), (right, -HALF_LANE)):
        assert np.ptp(line[:, 1]) < 0.05 and abs(line[:, 1].mean() - y) < 0.05
        assert np.all(line[:, 2] == 0)
    separation = left[:, 1] - right[:, 1]
    assert np.all(np.abs(separation - 3.7) < 0.05)
    np.testing.assert_allclose(left[:, 0], LINE_XS, atol=0.05)


def test_distortion_is_what_keeps_a_crossing_line_straight(udacity_calibration):
    """A line across the road 6 m ahead spans the image width, where the lens distortion is
    strong: with the calibrated model it comes back straight, read as a pinhole it bends by ~0.5 m."""
    camera, _ = udacity_calibration
    mounting = Mounting(height_m=1.2, pitch_rad=math.radians(2.0))
    projector = GroundProjector(camera, mounting)
    ys = np.linspace(-3.4, 3.4, 15)
    crossing = np.stack([np.full_like(ys, 6.0), ys, np.zeros_like(ys)], axis=1)
    pixels = projector.ground_to_image(crossing)
    assert pixels[:, 0].min() > 0 and pixels[:, 0].max() < 1280
    np.testing.assert_allclose(projector.image_to_ground(pixels), crossing, atol=0.01)
    pinhole = GroundProjector(CameraModel(camera.K, np.zeros(5), 1280, 720), mounting)
    assert np.ptp(pinhole.image_to_ground(pixels)[:, 0]) > 0.3


def test_mounting_angles_round_trip(udacity_calibration):
    camera, _ = udacity_calibration
    mounting = Mounting(height_m=1.5, pitch_rad=math.radians(4), roll_rad=math.radians(1.5),
                        yaw_rad=math.radians(-2), x_m=1.8, y_m=0.3)
    projector = GroundProjector(camera, mounting, max_range_m=60.0)
    ground = np.array([[8.0, 1.0, 0.0], [15.0, -2.0, 0.0], [30.0, 0.5, 0.0], [50.0, -1.0, 0.0]])
    np.testing.assert_allclose(projector.image_to_ground(projector.ground_to_image(ground)), ground, atol=1e-3)
    # Rows above the horizon never reach the road; points beyond max_range are dropped too.
    horizon = projector.horizon_row()
    assert horizon is not None and 0 < horizon < 360
    sky = np.array([[640.0, horizon - 40.0], [300.0, 10.0]])
    assert projector.image_to_ground(sky).shape == (0, 3)
    far = projector.ground_to_image(np.array([[80.0, 0.0, 0.0]]))
    assert projector.image_to_ground(far).shape == (0, 3)
    behind = projector.ground_to_image(np.array([[-5.0, 0.0, 0.0]]))
    assert np.all(np.isnan(behind))


def test_homography_matches_the_mounting(udacity_calibration):
    camera, _ = udacity_calibration
    by_pose = GroundProjector(camera, Mounting(height_m=1.2, pitch_rad=math.radians(2.0)))
    by_h = GroundProjector(camera, homography=-3.0 * by_pose.homography_from_mounting())  # any scale and sign
    left, right, pixels = parallel_lines(by_pose)
    np.testing.assert_allclose(by_h.image_to_ground(pixels[0]), left, atol=1e-6)
    np.testing.assert_allclose(by_h.ground_to_image(left), pixels[0], atol=1e-3)
    sky = np.array([[640.0, 100.0]])
    assert by_h.image_to_ground(sky).shape == (0, 3)


def test_camera_model_from_camera_info_and_yaml(tmp_path):
    info = SimpleNamespace(k=[1000.0, 0, 640, 0, 1000.0, 360, 0, 0, 1], d=[-0.2, 0.05, 0, 0, 0],
                           width=1280, height=720, distortion_model="plumb_bob")
    camera = CameraModel.from_camera_info(info)
    assert camera.K[0, 2] == 640 and camera.dist.tolist() == [-0.2, 0.05, 0, 0, 0]
    import yaml

    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump(camera.to_yaml_dict()))
    again = CameraModel.from_yaml(path)
    np.testing.assert_array_equal(again.K, camera.K)
    np.testing.assert_array_equal(again.dist, camera.dist)
    half = camera.scaled(640, 360)
    assert half.K[0, 0] == 500 and half.K[1, 2] == 180
    with pytest.raises(ValueError, match="9 values"):
        CameraModel(K=[1, 2, 3], dist=[], width=10, height=10)
    with pytest.raises(ValueError, match="height_m"):
        Mounting(height_m=-1.0)
    with pytest.raises(ValueError, match="exactly one"):
        GroundProjector(camera)
    with pytest.raises(ValueError, match="k / K"):
        CameraModel.from_camera_info(SimpleNamespace(d=[], width=1, height=1))


def test_calibration_needs_enough_views():
    blank = np.full((120, 160), 128, np.uint8)
    with pytest.raises(ValueError, match="found in only 0 image"):
        calibrate_chessboard([blank] * 3)
    with pytest.raises(ValueError, match="120x160"):
        calibrate_chessboard([blank, np.zeros((160, 120), np.uint8)])


@pytest.mark.parametrize("height, pitch_deg, yaw_deg", [(1.25, 3.0, 0.0), (1.6, 6.5, -1.5), (2.2, 1.0, 2.0)])
def test_mounting_from_straight_lanes_recovers_the_pose(height, pitch_deg, yaw_deg):
    """Straight ego boundaries 3.66 m apart seen through a distorting lens (with pixel noise and
    a lane offset in each frame) give back the camera's pitch, yaw and height."""
    camera = CameraModel(K=[1150.0, 0, 665, 0, 1145.0, 385, 0, 0, 1], dist=[-0.24, -0.05, 0.0, 0.0, 0.02],
                         width=1280, height=720)
    truth = Mounting(height_m=height, pitch_rad=math.radians(pitch_deg), yaw_rad=math.radians(yaw_deg))
    projector = GroundProjector(camera, truth)
    rng = np.random.default_rng(0)
    xs = np.linspace(6.0, 25.0, 20)
    pairs = []
    for offset in (-0.3, 0.0, 0.25, 0.4):  # the car drifts within its lane
        pair = []
        for y in (1.83 + offset, -1.83 + offset):
            px = projector.ground_to_image(np.stack([xs, np.full_like(xs, y), np.zeros_like(xs)], axis=1))
            pair.append(px + rng.normal(0.0, 0.5, px.shape))
        pairs.append(tuple(pair))
    pairs.append((pairs[0][0][:3], pairs[0][1]))  # too few points: skipped
    mounting, details = mounting_from_straight_lanes(camera, pairs, lane_width_m=3.66)
    assert details["frames"] == 4
    assert abs(math.degrees(mounting.pitch_rad) - pitch_deg) < 0.1
    assert abs(math.degrees(mounting.yaw_rad) - yaw_deg) < 0.1
    assert abs(mounting.height_m - height) / height < 0.02
    with pytest.raises(ValueError, match="cannot estimate the mounting"):
        mounting_from_straight_lanes(camera, [(pairs[0][0][:2], pairs[0][1])])
    # Boundaries that diverge towards the top (meet behind the camera) give no estimate either.
    flipped = [(p[0] * [1, -1] + [0, 720], p[1] * [1, -1] + [0, 720]) for p in pairs[:1]]
    with pytest.raises(ValueError, match="cannot estimate the mounting"):
        mounting_from_straight_lanes(camera, flipped)


def test_bundled_demo_camera_is_this_calibration(udacity_calibration):
    """demo/udacity/camera_info.yaml (the demo's camera model) is the chessboard calibration, in
    ROS camera_calibration's format, with the clip's MIT licence beside the clip."""
    import yaml

    demo = Path(__file__).resolve().parents[1] / "demo" / "udacity"
    data = yaml.safe_load((demo / "camera_info.yaml").read_text())
    assert {"image_width", "image_height", "camera_name", "camera_matrix", "distortion_model",
            "distortion_coefficients", "rectification_matrix", "projection_matrix"} <= set(data)
    assert data["distortion_model"] == "plumb_bob" and len(data["projection_matrix"]["data"]) == 12
    bundled = CameraModel.from_yaml(demo / "camera_info.yaml")
    camera, _ = udacity_calibration
    np.testing.assert_allclose(bundled.K, camera.K, rtol=1e-6)
    np.testing.assert_allclose(bundled.dist, camera.dist, rtol=1e-5, atol=1e-8)
    assert "MIT License" in (demo / "LICENSE").read_text() and (demo / "project_video_clip.mp4").stat().st_size > 0


# ----- CameraInfo roi and binning, frame sizes (issue 21.2) -----------------------------------
# A level camera 1.5 m above a flat road, fx = fy = 1000 px, principal point (640, 360) of its
# 1280x720 calibrated image, no distortion. The pixel (u, v) of the full image sees the road at
#   x = 1.5 * 1000 / (v - 360) m ahead,  y = -1.5 * (u - 640) / (v - 360) m to the left.
# So full-image pixel (520, 560) is the road point (7.5 m, 0.9 m).
LEVEL_K = [1000.0, 0.0, 640.0, 0.0, 1000.0, 360.0, 0.0, 0.0, 1.0]
ROAD_POINT = [7.5, 0.9, 0.0]


def camera_info(roi=(0, 0, 0, 0), binning=(0, 0), d=(0.0, 0.0, 0.0, 0.0, 0.0), k=LEVEL_K):
    """A sensor_msgs/CameraInfo's fields (the names rclpy and rosbags give them)."""
    x, y, w, h = roi
    return SimpleNamespace(k=list(k), d=list(d), width=1280, height=720, distortion_model="plumb_bob",
                           roi=SimpleNamespace(x_offset=x, y_offset=y, width=w, height=h, do_rectify=False),
                           binning_x=binning[0], binning_y=binning[1])


def node_params(**overrides):
    params = dict(homography=[0.0] * 9, camera_height=1.5, pitch=0.0, roll=0.0, yaw=0.0, camera_x=0.0,
                  camera_y=0.0, camera_info_topic="/camera/camera_info", fx=0.0, fy=0.0, cx=0.0, cy=0.0,
                  dist=[0.0] * 5, image_width=0, image_height=0)
    params.update(overrides)
    return params


@pytest.mark.parametrize("roi,binning,frame,pixel", [
    ((0, 0, 0, 0), (0, 0), (1280, 720), (520, 560)),  # the whole image
    ((0, 0, 0, 0), (2, 2), (640, 360), (260, 280)),  # binned 2x2: (520 / 2, 560 / 2)
    ((0, 360, 1280, 360), (0, 0), (1280, 360), (520, 200)),  # the bottom half: row 560 - 360
    ((320, 360, 640, 360), (2, 2), (320, 180), (100, 100)),  # cut, then binned: ((520 - 320) / 2, (560 - 360) / 2)
    ((320, 360, 640, 360), (2, 1), (320, 360), (100, 200)),  # binned in x only
], ids=["full", "binned", "roi", "roi_binned", "roi_binned_x"])
def test_camera_info_roi_and_binning_give_the_road_point(roi, binning, frame, pixel):
    """The same road point, seen through each cut and binning of the image, comes back at (7.5, 0.9) m.
    Before the fix the roi was ignored: the bottom-half pixel (520, 200) went to 37.5 m."""
    camera = CameraModel.from_camera_info(camera_info(roi, binning))
    assert (camera.width, camera.height) == frame
    projector = GroundProjector(camera, Mounting(height_m=1.5))
    np.testing.assert_allclose(projector.image_to_ground(np.array([pixel], float)), [ROAD_POINT], atol=1e-9)
    ground = GroundModels(node_params())
    assert ground.update_from_camera_info(camera_info(roi, binning))
    assert not ground.update_from_camera_info(camera_info(roi, binning)), "the same CameraInfo again"
    found = ground.projector(*frame).image_to_ground(np.array([pixel], float))
    np.testing.assert_allclose(found, [ROAD_POINT], atol=1e-9)
    half = ground.projector(frame[0] // 2, frame[1] // 2)  # those images resized to half: still the camera
    np.testing.assert_allclose(half.image_to_ground(np.array([pixel], float) / 2), [ROAD_POINT], atol=1e-9)


def test_a_homography_is_for_the_full_image_whatever_the_frames_are():
    full = CameraModel.from_camera_info(camera_info())
    homography = GroundProjector(full, Mounting(height_m=1.5)).homography_from_mounting()
    ground = GroundModels(node_params(homography=homography.reshape(-1).tolist()))
    ground.update_from_camera_info(camera_info((320, 360, 640, 360), (2, 2)))
    np.testing.assert_allclose(ground.projector(320, 180).image_to_ground(np.array([[100.0, 100.0]])),
                               [ROAD_POINT], atol=1e-9)


def test_roi_with_distortion_matches_the_full_image():
    """Distortion is centred on the calibrated principal point: a pixel of the cut and binned image
    lands where its full-image pixel does."""
    d = (-0.24, -0.05, -0.001, 0.0, 0.02)
    full = GroundProjector(CameraModel.from_camera_info(camera_info(d=d)), Mounting(height_m=1.5, pitch_rad=0.05))
    cut = GroundProjector(CameraModel.from_camera_info(camera_info((320, 300, 800, 420), (2, 2), d=d)),
                          Mounting(height_m=1.5, pitch_rad=0.05))
    pixels = np.array([[10.0, 150.0], [200.0, 120.0], [390.0, 200.0]])
    np.testing.assert_allclose(cut.image_to_ground(pixels), full.image_to_ground(pixels * 2 + [320, 300]),
                               atol=1e-6)


def test_a_frame_size_that_is_no_resize_of_the_calibration_is_refused():
    """1280x720 calibration: 1280x360 (a crop the CameraInfo does not describe) or 640x480 (4:3)
    would be stretched, putting ground points metres off; they are refused. Resizes are not."""
    ground = GroundModels(node_params())
    assert ground.projector(1280, 720) is None, "no CameraInfo yet: no camera model, no refusal"
    ground.update_from_camera_info(camera_info())
    for width, height in ((1280, 360), (640, 480), (1280, 719 - 4), (333, 201)):
        with pytest.raises(ImageSizeMismatch, match=f"a {width}x{height} frame is not the 1280x720"):
            ground.projector(width, height)
        with pytest.raises(ImageSizeMismatch):  # refused again from the cache
            ground.projector(width, height)
    for width, height in ((1920, 1080), (640, 360), (427, 240), (1281, 720)):  # within a pixel of one scale
        assert ground.projector(width, height).camera.width == width
    ground.update_from_camera_info(camera_info((0, 360, 1280, 360)))  # now the CameraInfo says: bottom half
    assert ground.projector(1280, 360) is not None
    with pytest.raises(ImageSizeMismatch, match="not the 1280x360"):
        ground.projector(1280, 720)
    # Intrinsics from parameters: the calibrated size rules the same way; 0x0 = any frame size, unscaled.
    sized = GroundModels(node_params(camera_info_topic="", fx=1000.0, cx=640.0, cy=360.0,
                                     image_width=1280, image_height=720))
    with pytest.raises(ImageSizeMismatch):
        sized.projector(640, 480)
    assert sized.projector(640, 360).camera.K[0, 0] == 500.0
    anysize = GroundModels(node_params(camera_info_topic="", fx=1000.0, cx=640.0, cy=360.0))
    assert anysize.projector(640, 480).camera.K[0, 0] == 1000.0
    with pytest.raises(ValueError, match="image_width and image_height"):
        GroundModels(node_params(camera_info_topic="", fx=1000.0, image_width=1280))


def test_a_roi_outside_the_image_makes_no_camera():
    ground = GroundModels(node_params())
    ground.update_from_camera_info(camera_info())
    with pytest.raises(ValueError, match="roi .* does not lie inside the 1280x720"):
        ground.update_from_camera_info(camera_info((640, 0, 1280, 720)))
    assert ground.projector(1280, 720) is not None, "the previous camera model stays"
