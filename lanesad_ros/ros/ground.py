"""Camera model for ground-plane lanes in the node: intrinsics from parameters or CameraInfo,
the mounting or a homography from parameters, one GroundProjector per frame size.

A CameraInfo's ``roi`` and ``binning`` are applied as image_geometry's PinholeCameraModel
does (CameraModel.from_camera_info): the images that come with it are the calibrated image
cut to the roi, then binned. Frames of that size, or of that image resized (one scale for
both sides), get their camera model; a frame of another aspect ratio gets none
(ImageSizeMismatch: the node publishes its image lanes without ground points and counts
it), never a stretched one. Intrinsics from parameters with ``image_width``/``image_height``
0 hold for frames of any size, unscaled.

A ``homography`` maps undistorted pixels of the calibrated full-resolution image (the
CameraInfo's width x height, or image_width x image_height) to the ground; for other frames
it is composed with the pixel change K_full K_frame^-1.

Thread-safe: CameraInfo updates arrive on the executor thread while the inference worker
asks for projectors.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from lanesad_ros.camera import CameraModel, GroundProjector, ImageSizeMismatch, Mounting


@dataclass(frozen=True)
class Calibration:
    """``full``: the calibrated camera; ``images``: the camera of the incoming images (``full``
    with the CameraInfo's roi and binning applied); ``any_size``: intrinsics given without a
    calibrated size, taken as they are for frames of every size."""

    full: CameraModel
    images: CameraModel
    any_size: bool = False


class GroundModels:
    """``projector(width, height)``: the GroundProjector for frames of that size, or None without intrinsics."""

    def __init__(self, params: dict[str, Any]) -> None:
        """From the node parameters (fx, fy, cx, cy, dist, image_width/height, mounting, homography).

        Raises ValueError when the intrinsics from parameters cannot make a camera model.
        """
        self._lock = threading.Lock()
        self._projectors: dict[tuple[int, int], GroundProjector | ImageSizeMismatch] = {}
        self.calibration: Calibration | None = None
        self._info_key: tuple | None = None  # the CameraInfo fields the calibration was made from
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
        width, height = params["image_width"], params["image_height"]
        if bool(width) != bool(height):
            raise ValueError(f"image_width and image_height give the calibrated size together (both 0 = any frame "
                             f"size), got {width} and {height}")
        camera = CameraModel(K=k, dist=list(params["dist"]), width=width or 1, height=height or 1)
        self.calibration = Calibration(camera, camera, any_size=not width)
        if width:
            self.projector(width, height)  # bad intrinsics fail at start-up

    def _build(self, calibration: Calibration, width: int, height: int) -> GroundProjector:
        """Raises ImageSizeMismatch for a frame size the calibration does not describe."""
        if calibration.any_size:
            full = camera = CameraModel(calibration.full.K, calibration.full.dist, width, height,
                                        calibration.full.distortion_model)
        else:
            full, camera = calibration.full, calibration.images.for_image(width, height)
        homography = None
        if self._homography is not None:  # given for the full image's undistorted pixels
            homography = self._homography @ full.K @ np.linalg.inv(camera.K)
        return GroundProjector(camera, mounting=self._mounting, homography=homography)

    def projector(self, width: int, height: int) -> GroundProjector | None:
        """Projector for frames of ``width`` x ``height`` px, cached per size; None without intrinsics.

        Raises ImageSizeMismatch (a ValueError) when such frames are not the calibrated images,
        cut and binned as the CameraInfo says, nor those resized.
        """
        with self._lock:
            calibration = self.calibration
            projector = self._projectors.get((width, height))
        if calibration is None:
            return None
        if projector is None:
            try:
                projector = self._build(calibration, width, height)
            except ImageSizeMismatch as exc:
                projector = exc
            with self._lock:
                if self.calibration is calibration:
                    self._projectors[(width, height)] = projector
        if isinstance(projector, ImageSizeMismatch):
            raise projector
        return projector

    def update_from_camera_info(self, msg: Any) -> bool:
        """Take the intrinsics, roi and binning of a sensor_msgs/CameraInfo; False when unchanged.

        Raises ValueError (and keeps the previous intrinsics) when they make no camera model.
        """
        roi = msg.roi
        key = (tuple(float(v) for v in msg.k), tuple(float(v) for v in msg.d), int(msg.width), int(msg.height),
               msg.distortion_model, (roi.x_offset, roi.y_offset, roi.width, roi.height),
               (int(msg.binning_x), int(msg.binning_y)))
        with self._lock:
            if key == self._info_key:
                return False
        calibration = Calibration(CameraModel.from_camera_info(msg, full_resolution=True),
                                  CameraModel.from_camera_info(msg))
        images = calibration.images
        projector = self._build(calibration, images.width, images.height)  # raises before anything changes
        with self._lock:
            self.calibration, self._info_key = calibration, key
            self._projectors = {(images.width, images.height): projector}
        return True
