"""The bundled demo input: clip, licence, camera model and node parameters agree with each other."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from lanesad_ros.camera import CameraModel

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "udacity"


def test_clip_ships_with_its_licence_and_attribution():
    assert (DEMO / "project_video_clip.mp4").stat().st_size > 100_000
    assert "MIT License" in (DEMO / "LICENSE").read_text() and "Udacity" in (DEMO / "LICENSE").read_text()
    assert "Udacity" in (DEMO / "README.md").read_text()


def test_node_parameters_are_real_and_carry_the_calibration():
    """demo/udacity/lane_detector.yaml sets only parameters config/lane_detector.yaml declares,
    with their types, and its intrinsics are camera_info.yaml's."""
    declared = yaml.safe_load((ROOT / "config" / "lane_detector.yaml").read_text())["/**/lane_detector"]
    params = yaml.safe_load((DEMO / "lane_detector.yaml").read_text())["/**/lane_detector"]  # any namespace
    declared, params = declared["ros__parameters"], params["ros__parameters"]
    assert set(params) <= set(declared)
    for name, value in params.items():
        assert type(value) is type(declared[name]), name
    camera = CameraModel.from_yaml(DEMO / "camera_info.yaml")
    np.testing.assert_allclose([params["fx"], params["fy"], params["cx"], params["cy"]],
                               [camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]], rtol=1e-6)
    np.testing.assert_allclose(params["dist"], camera.dist, rtol=1e-5, atol=1e-9)
    assert (params["image_width"], params["image_height"]) == (camera.width, camera.height) == (1280, 720)
    # A car's camera: about a metre or two up, looking within a few degrees of level.
    assert 0.8 < params["camera_height"] < 2.0 and abs(params["pitch"]) < 0.1 and abs(params["yaw"]) < 0.05
