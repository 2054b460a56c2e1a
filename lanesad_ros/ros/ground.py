"""Camera model for ground-plane lanes in the node: intrinsics from parameters or CameraInfo,
the mounting or a homography from parameters, one GroundProjector per frame size.

Intrinsics calibrated at one size are scaled to the size of each frame (CameraModel.scaled),
so a camera that changes resolution keeps correct ground points from its first frame at
the new size. Thread-safe: CameraInfo updates arrive on the executor thread while the
inference worker asks for projectors.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from lanesad_ros.camera import CameraModel, GroundProjector, Mounting

# (K 3x3 nested list, dist list, calibrated width, calibrated height, distortion model)
Calibration = tuple[list, list, int, int, str]


class GroundModels:
    """``projector(width, height)``: the GroundProjector for frames of that size, or None without intrinsics."""

    def __init__(self, params: dict[str, Any]) -> None:
        """From the node parameters (fx, fy, cx, cy, dist, image_width/height, mounting, homography).

        Raises ValueError when the intrinsics from parameters cannot make a camera model.
        """
        self._lock = threading.Lock()
        self._projectors: dict[tuple[int, int], GroundProjector] = {}
        self.calibration: Calibration | None = None
        homography = np.asarray(params["homography"], dtype=np.float64)
        self._homography = homography.reshape(3, 3) if np.any(homography) else None
        self._mounting = None
        if self._homography is None:
            self._mounting = Mounting(height_m=params["camera_height"], pitch_rad=params["pitch"],
                                      roll_rad=params["roll"], yaw_rad=params["yaw"],
                                      x_m=params["camera_x"], y_m=params["camera_y"])
        if params["camera_info_topic"] or params["fx"] <= 0.0:
            return
        fy = params["fy"] or params["fx"]
        k = [[params["fx"], 0.0, params["cx"]], [0.0, fy, params["cy"]], [0.0, 0.0, 1.0]]
        self.calibration = (k, list(params["dist"]), params["image_width"], params["image_height"], "plumb_bob")
        if params["image_width"] and params["image_height"]:
            self.projector(params["image_width"], params["image_height"])  # bad intrinsics fail at start-up

    def _build(self, calibration: Calibration, width: int, height: int) -> GroundProjector:
        k, dist, cal_width, cal_height, model = calibration
        camera = CameraModel(K=k, dist=dist, width=cal_width or width, height=cal_height or height,
                             distortion_model=model)
        if (camera.width, camera.height) != (width, height):
            camera = camera.scaled(width, height)
        return GroundProjector(camera, mounting=self._mounting, homography=self._homography)

    def projector(self, width: int, height: int) -> GroundProjector | None:
        """Projector for frames of ``width`` x ``height`` px (intrinsics scaled to that size), cached per size."""
        with self._lock:
            calibration = self.calibration
            projector = self._projectors.get((width, height))
        if calibration is None or projector is not None:
            return projector
        projector = self._build(calibration, width, height)
        with self._lock:
            if self.calibration is calibration:
                self._projectors[(width, height)] = projector
        return projector

    def update_from_camera_info(self, msg: Any) -> bool:
        """Take the intrinsics of a sensor_msgs/CameraInfo; False when unchanged.

        Raises ValueError (and keeps the previous intrinsics) when they make no camera model.
        """
        calibration = (np.asarray(msg.k).reshape(3, 3).tolist(), list(msg.d), int(msg.width), int(msg.height),
                       msg.distortion_model or "plumb_bob")
        with self._lock:
            if calibration == self.calibration:
                return False
        projector = self._build(calibration, int(msg.width), int(msg.height))  # raises before anything changes
        with self._lock:
            self.calibration = calibration
            self._projectors = {(int(msg.width), int(msg.height)): projector}
        return True
