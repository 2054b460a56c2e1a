"""Camera model, mounting and flat-ground projection: lane pixels -> metres in the vehicle frame.

Vehicle frame (REP 103): x forward, y left, z up, origin on the road surface. The camera's
optical frame is x right, y down, z forward. Points are undistorted with the calibrated
model, turned into rays, and intersected with the plane z = 0 (a flat road).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

# Optical axes expressed in the vehicle frame for a level, forward-looking camera:
# optical x (right) = -y, optical y (down) = -z, optical z (forward) = +x.
_OPTICAL_TO_LEVEL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-9)


def _field(obj, *names):
    """First present attribute / key of ``obj`` among ``names`` (CameraInfo fields differ by ROS version)."""
    for name in names:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        if not isinstance(obj, Mapping) and hasattr(obj, name):
            return getattr(obj, name)
    raise ValueError(f"camera info has no field {' / '.join(names)}")


class ImageSizeMismatch(ValueError):
    """A frame of a size that no resize of the calibrated image gives (another aspect ratio, a crop
    that the CameraInfo's roi does not describe): its pixels cannot be turned into rays."""


@dataclass
class CameraModel:
    """Pinhole intrinsics ``K`` (3x3) + OpenCV distortion coefficients for a ``width`` x ``height`` image."""

    K: np.ndarray
    dist: np.ndarray
    width: int
    height: int
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        if self.K.size != 9:
            raise ValueError(f"camera matrix K must have 9 values (3x3), got {self.K.size}")
        self.K = self.K.reshape(3, 3)
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise ValueError(f"camera matrix K needs positive focal lengths, got fx={self.K[0, 0]}, fy={self.K[1, 1]}")
        self.dist = np.asarray(self.dist if self.dist is not None else [], dtype=np.float64).reshape(-1)
        if self.dist.size not in (0, 4, 5, 8, 12, 14):
            raise ValueError(f"distortion coefficients must number 0, 4, 5, 8, 12 or 14, got {self.dist.size}")
        if self.distortion_model not in ("plumb_bob", "rational_polynomial"):
            raise ValueError(f"distortion_model {self.distortion_model!r} is not supported "
                             "(plumb_bob, rational_polynomial)")
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_camera_info(cls, info, full_resolution: bool = False) -> CameraModel:
        """The camera of the images published with a sensor_msgs/CameraInfo (rclpy or rosbags, or any
        object/dict with its fields): K and D calibrated at ``width`` x ``height`` with the message's
        ``roi`` and ``binning_x/_y`` applied (:meth:`reduced`), as image_geometry's
        PinholeCameraModel does (REP 104). ``full_resolution``: the calibrated camera itself (its
        ``fullIntrinsicMatrix``). Raises ValueError naming the field that makes no camera.
        """
        dist = _field(info, "d", "D")
        model = _field(info, "distortion_model") if _has(info, "distortion_model") else "plumb_bob"
        full = cls(K=np.asarray(_field(info, "k", "K"), dtype=np.float64), dist=np.asarray(dist, dtype=np.float64),
                   width=int(_field(info, "width")), height=int(_field(info, "height")),
                   distortion_model=model or "plumb_bob")
        if full_resolution:
            return full
        roi = _field(info, "roi") if _has(info, "roi") else None
        roi = (0, 0, 0, 0) if roi is None else tuple(int(_field(roi, name)) for name in
                                                    ("x_offset", "y_offset", "width", "height"))
        binning = tuple(int(_field(info, name)) if _has(info, name) else 0 for name in ("binning_x", "binning_y"))
        return full.reduced(roi, binning)

    def reduced(self, roi: tuple[int, int, int, int] = (0, 0, 0, 0),
                binning: tuple[int, int] = (1, 1)) -> CameraModel:
        """The camera of images cut to ``roi`` (x_offset, y_offset, width, height in pixels of this,
        the calibrated, unbinned image) and then binned by ``binning`` (x, y): sensor_msgs/CameraInfo's
        roi and binning, applied as image_geometry's PinholeCameraModel.fromCameraInfo does:
        cx' = (cx - x_offset) / binning_x, fx' = fx / binning_x (y alike), image size
        roi.width // binning_x by roi.height // binning_y (``reducedResolution``). An all-zero roi is
        the whole image and a binning of 0 means 1, as in the message. ROS drivers send the raw
        (distorted) roi, which is what is applied here (``roi.do_rectify`` concerns rectified images).
        Raises ValueError for a roi outside the image.
        """
        x, y, w, h = (int(v) for v in roi)
        bx, by = (max(1, int(b)) for b in binning)  # unsigned in the message; 0 = no binning
        if (x, y, w, h) == (0, 0, 0, 0):
            w, h = self.width, self.height
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > self.width or y + h > self.height:
            raise ValueError(f"camera roi (x_offset {x}, y_offset {y}, width {w}, height {h}) does not lie inside "
                             f"the {self.width}x{self.height} calibrated image")
        if (x, y, w, h, bx, by) == (0, 0, self.width, self.height, 1, 1):
            return self
        K = self.K.copy()
        K[0, 2] -= x  # the roi first: it is given in unbinned pixels
        K[1, 2] -= y
        K[0] /= bx  # fx, skew, cx
        K[1] /= by  # fy, cy
        return CameraModel(K, self.dist.copy(), w // bx, h // by, self.distortion_model)

    def for_image(self, width: int, height: int) -> CameraModel:
        """This camera for frames of ``width`` x ``height`` px: itself at its own size, :meth:`scaled`
        when the frame is this image resized (one scale for both sides, each within a pixel of
        rounding). Raises ImageSizeMismatch for any other size: another aspect ratio is a crop or
        a stretch that the calibration does not describe, and scaling would put its pixels on
        wrong rays (ground points metres off)."""
        width, height = int(width), int(height)
        if (width, height) == (self.width, self.height):
            return self
        lowest = max((width - 1) / self.width, (height - 1) / self.height)
        highest = min((width + 1) / self.width, (height + 1) / self.height)
        if width <= 0 or height <= 0 or lowest > highest:
            raise ImageSizeMismatch(
                f"a {width}x{height} frame is not the {self.width}x{self.height} calibrated image resized (aspect "
                f"{width / max(height, 1):.3f}, calibrated {self.width / self.height:.3f}); a cropped image needs "
                f"its roi (and binning) in the CameraInfo, or image_width/image_height of the frames it calibrates")
        return self.scaled(width, height)

    @classmethod
    def from_yaml(cls, source: Mapping | str | os.PathLike) -> CameraModel:
        """From a ROS camera_info YAML file (camera_calibration's format) or its parsed dict."""
        if not isinstance(source, Mapping):
            import yaml

            with open(source, encoding="utf-8") as f:
                data = yaml.safe_load(f)
            if not isinstance(data, Mapping):
                raise ValueError(f"camera info YAML {source} must hold a mapping")
        else:
            data = source
        try:
            return cls(K=_field(data, "camera_matrix")["data"], dist=_field(data, "distortion_coefficients")["data"],
                       width=_field(data, "image_width"), height=_field(data, "image_height"),
                       distortion_model=data.get("distortion_model", "plumb_bob"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"camera info YAML is missing a 'data' list: {exc}") from None

    def to_yaml_dict(self, camera_name: str = "camera") -> dict:
        """ROS camera_info YAML dict, camera_calibration's format (rectification identity, projection = K)."""
        projection = np.hstack([self.K, np.zeros((3, 1))])
        return {
            "image_width": self.width, "image_height": self.height, "camera_name": camera_name,
            "camera_matrix": {"rows": 3, "cols": 3, "data": self.K.reshape(-1).tolist()},
            "distortion_model": self.distortion_model,
            "distortion_coefficients": {"rows": 1, "cols": int(self.dist.size), "data": self.dist.tolist()},
            "rectification_matrix": {"rows": 3, "cols": 3, "data": np.eye(3).reshape(-1).tolist()},
            "projection_matrix": {"rows": 3, "cols": 4, "data": projection.reshape(-1).tolist()},
        }

    def scaled(self, width: int, height: int) -> CameraModel:
        """The same camera for an image resized to ``width`` x ``height`` (distortion is scale-free)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return CameraModel(K, self.dist.copy(), width, height, self.distortion_model)

    def normalised_rays(self, points_px: np.ndarray) -> np.ndarray:
        """Distorted pixels (N, 2) -> undistorted normalised image coordinates (N, 2)."""
        pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 1, 2)
        if len(pts) == 0:
            return np.zeros((0, 2))
        if self.dist.size == 0 or not np.any(self.dist):
            out = (pts.reshape(-1, 2) - self.K[:2, 2]) / np.diag(self.K)[:2]
            out[:, 0] -= self.K[0, 1] * out[:, 1] / self.K[0, 0]
            return out
        if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4 names the variant with criteria separately
            return cv2.undistortPointsIter(pts, self.K, self.dist, None, None, _UNDISTORT_CRITERIA).reshape(-1, 2)
        return cv2.undistortPoints(pts, self.K, self.dist, criteria=_UNDISTORT_CRITERIA).reshape(-1, 2)


def _has(obj, name: str) -> bool:
    return name in obj if isinstance(obj, Mapping) else hasattr(obj, name)


@dataclass(frozen=True)
class Mounting:
    """Camera pose on the vehicle: height of the optical centre above the road, its position
    (x forward, y left) from the vehicle origin, and its rotation: ``pitch_rad`` > 0 tilts the
    view down, ``roll_rad`` > 0 rolls it right side down (about x), ``yaw_rad`` > 0 turns it left."""

    height_m: float
    pitch_rad: float = 0.0
    roll_rad: float = 0.0
    yaw_rad: float = 0.0
    x_m: float = 0.0
    y_m: float = 0.0

    def __post_init__(self) -> None:
        if not self.height_m > 0:
            raise ValueError(f"camera mounting height_m must be > 0 (camera above the road), got {self.height_m}")
        for name in ("pitch_rad", "roll_rad", "yaw_rad"):
            if abs(getattr(self, name)) >= math.pi / 2:
                raise ValueError(f"camera mounting {name} must be within +-90 degrees, got {getattr(self, name)}")

    def rotation(self) -> np.ndarray:
        """Rotation taking optical-frame vectors to the vehicle frame."""
        cr, sr = math.cos(self.roll_rad), math.sin(self.roll_rad)
        cp, sp = math.cos(self.pitch_rad), math.sin(self.pitch_rad)
        cy, sy = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
        ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
        rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
        return rz @ ry @ rx @ _OPTICAL_TO_LEVEL

    def position(self) -> np.ndarray:
        return np.array([self.x_m, self.y_m, self.height_m])


@dataclass
class GroundProjector:
    """Pixels of one camera <-> points on the flat road, in the vehicle frame.

    Give either a ``mounting`` or a ``homography`` (3x3, undistorted pixels -> ground (x, y)
    metres, e.g. from four surveyed road points). Points at or above the horizon, and points
    farther than ``max_range_m`` from the camera, are dropped.
    """

    camera: CameraModel
    mounting: Mounting | None = None
    homography: np.ndarray | None = None
    max_range_m: float = 100.0
    _rotation: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if (self.mounting is None) == (self.homography is None):
            raise ValueError("GroundProjector needs exactly one of mounting or homography")
        if self.homography is not None:
            h = np.asarray(self.homography, dtype=np.float64).reshape(3, 3)
            # A homography's scale sign is arbitrary; fix it so road points (the bottom centre
            # of the image) have w > 0, which makes w <= 0 mean "at or above the horizon".
            w = h[2] @ np.array([self.camera.width / 2.0, self.camera.height - 1.0, 1.0])
            self.homography = h if w > 0 else -h
        if self.mounting is not None:
            self._rotation = self.mounting.rotation()
        if not self.max_range_m > 0:
            raise ValueError(f"max_range_m must be > 0, got {self.max_range_m}")

    def image_to_ground(self, points_px: np.ndarray, keep_all: bool = False) -> np.ndarray:
        """(N, 2) source pixels -> (M, 3) metres on the road (z = 0), M <= N, order kept.

        ``keep_all``: (N, 3) instead, with NaN rows for the points that would be dropped (at or
        above the horizon, beyond ``max_range_m``), so row i still belongs to pixel i.
        """
        rays = self.camera.normalised_rays(points_px)
        if len(rays) == 0:
            return np.zeros((0, 3), np.float64)
        ground = np.full((len(rays), 3), np.nan)
        if self.homography is not None:
            undist = rays @ self.camera.K[:2, :2].T + self.camera.K[:2, 2]
            g = np.hstack([undist, np.ones((len(undist), 1))]) @ self.homography.T
            valid = g[:, 2] > 1e-12
            ground[valid, :2] = g[valid, :2] / g[valid, 2:3]
            origin = np.zeros(2)
        else:
            d = np.hstack([rays, np.ones((len(rays), 1))]) @ self._rotation.T
            centre = self.mounting.position()
            valid = d[:, 2] < -1e-9  # rays that meet the road ahead of the camera
            t = -centre[2] / d[valid, 2]
            ground[valid] = centre + t[:, None] * d[valid]
            origin = centre[:2]
        ground[valid, 2] = 0.0
        with np.errstate(invalid="ignore"):
            valid &= np.linalg.norm(ground[:, :2] - origin, axis=1) <= self.max_range_m
        if keep_all:
            ground[~valid] = np.nan
            return ground
        return ground[valid]

    def ground_to_image(self, points_m: np.ndarray) -> np.ndarray:
        """(N, 3) vehicle-frame metres -> (N, 2) distorted pixels; NaN for points behind the camera."""
        pts = np.asarray(points_m, dtype=np.float64).reshape(-1, 3)
        if self.homography is not None:
            xy1 = np.hstack([pts[:, :2], np.ones((len(pts), 1))]) @ np.linalg.inv(self.homography).T
            cam = np.linalg.solve(self.camera.K, xy1.T).T  # K^-1 [u v 1]: a ray in the optical frame
        else:
            cam = (pts - self.mounting.position()) @ self._rotation  # R^T (p - c), row-wise
        out = np.full((len(pts), 2), np.nan)
        front = cam[:, 2] > 1e-9
        if np.any(front):
            projected, _ = cv2.projectPoints(cam[front].reshape(-1, 1, 3), np.zeros(3), np.zeros(3),
                                             self.camera.K, self.camera.dist)
            out[front] = projected.reshape(-1, 2)
        return out

    def horizon_row(self) -> float | None:
        """Image row of the horizon at the image centre column (undistorted), or None with a homography."""
        if self.mounting is None:
            return None
        forward = self._rotation.T @ np.array([1.0, 0.0, 0.0])
        if forward[2] <= 0:
            return None
        return float(self.camera.K[1, 1] * forward[1] / forward[2] + self.camera.K[1, 2])

    def homography_from_mounting(self) -> np.ndarray:
        """The undistorted-pixel -> ground homography this mounting implies (for a homography config)."""
        if self.mounting is None:
            raise ValueError("homography_from_mounting needs a mounting")
        r, c = self._rotation, self.mounting.position()
        # Ground point (x, y, 0) in the optical frame: R^T ([x, y, 0] - c) = [r1 r2 -R^T c] [x y 1]^T.
        rt = r.T
        h_ground_to_px = self.camera.K @ np.column_stack([rt[:, 0], rt[:, 1], -rt @ c])
        h = np.linalg.inv(h_ground_to_px)
        return h / h[2, 2]


def calibrate_chessboard(images: Iterable, pattern: tuple[int, int] = (9, 6), square_size: float = 1.0,
                         detect_scale: float = 1.0) -> tuple[CameraModel, float]:
    """Intrinsics + distortion from chessboard views -> (CameraModel, RMS reprojection error in px).

    ``images``: BGR/grey arrays or image paths, all the same size. ``pattern``: inner corners
    (columns, rows). Views where the whole board is not found are skipped; at least three
    must be usable. ``detect_scale`` < 1 finds corners on a downscaled copy (much faster on
    big images) and refines them at full resolution.
    """
    cols, rows = pattern
    board = np.zeros((rows * cols, 3), np.float32)
    board[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * square_size
    object_points, image_points, size, names = [], [], None, []
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-3)
    for index, item in enumerate(images):
        name = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"image {index}"
        image = cv2.imread(name, cv2.IMREAD_GRAYSCALE) if isinstance(item, (str, os.PathLike)) else item
        if image is None:
            raise ValueError(f"cannot read calibration image {name}")
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if size is None:
            size = gray.shape[::-1]
        elif gray.shape[::-1] != size:
            raise ValueError(f"calibration image {name} is {gray.shape[1]}x{gray.shape[0]}, "
                             f"the others {size[0]}x{size[1]}")
        small = cv2.resize(gray, None, fx=detect_scale, fy=detect_scale, interpolation=cv2.INTER_AREA) \
            if detect_scale != 1.0 else gray
        found, corners = cv2.findChessboardCorners(small, pattern, flags=flags)
        if not found:
            continue
        corners = (corners / detect_scale).astype(np.float32)
        cv2.cornerSubPix(gray, corners, (11, 11), (-1, -1), criteria)
        object_points.append(board)
        image_points.append(corners)
        names.append(name)
    if len(image_points) < 3:
        raise ValueError(f"chessboard {cols}x{rows} found in only {len(image_points)} image(s); need at least 3")
    rms, K, dist, _, _ = cv2.calibrateCamera(object_points, image_points, size, None, None)
    return CameraModel(K=K, dist=dist.reshape(-1), width=size[0], height=size[1]), float(rms)


def _undistorted_line(camera: CameraModel, points_px: np.ndarray) -> np.ndarray:
    """Homogeneous line (a, b, c), a x + b y + c = 0, through undistorted normalised points (total least squares)."""
    rays = camera.normalised_rays(np.asarray(points_px, dtype=np.float64).reshape(-1, 2))
    centre = rays.mean(axis=0)
    _, _, vt = np.linalg.svd(rays - centre, full_matrices=False)
    normal = vt[-1]
    return np.array([normal[0], normal[1], -normal @ centre])


def mounting_from_straight_lanes(camera: CameraModel, lane_pairs: Iterable[tuple[np.ndarray, np.ndarray]],
                                 lane_width_m: float = 3.66, min_points: int = 5) -> tuple[Mounting, dict]:
    """Camera pitch, yaw and height from the ego lane's two boundaries seen on a straight, flat road.

    ``lane_pairs``: per frame, (left, right) distorted source pixels (N, 2) of the near part of
    the two ego boundaries, each a straight line on the road, parallel to the direction of travel.
    Each boundary is undistorted and fitted by a line; the two meet at the vanishing point of
    the road direction, whose undistorted normalised coordinates (x_v, y_v) give, with roll
    taken as zero, ``pitch = atan(-y_v)`` and ``yaw = atan(x_v cos(pitch))`` (Hartley & Zisserman,
    Multiple View Geometry, 2nd ed., sec. 8.6: vanishing points and directions). The boundaries
    then projected onto the road from a 1 m high camera lie ``w1`` metres apart; the camera
    height is ``lane_width_m / w1`` (the ground scales with the height). 3.66 m is the 12 ft US
    Interstate lane. The median over frames is kept.

    Returns (Mounting, details) where details holds the vanishing point in undistorted pixels,
    per-frame pitch / yaw / height and the frames used. Raises ValueError when no frame has two
    boundaries of ``min_points`` points that meet ahead of the camera.
    """
    if not lane_width_m > 0:
        raise ValueError(f"lane_width_m must be > 0, got {lane_width_m}")
    pitches, yaws, heights, vps = [], [], [], []
    for left, right in lane_pairs:
        left, right = np.asarray(left, np.float64).reshape(-1, 2), np.asarray(right, np.float64).reshape(-1, 2)
        if min(len(left), len(right)) < min_points:
            continue
        vp = np.cross(_undistorted_line(camera, left), _undistorted_line(camera, right))
        if abs(vp[2]) < 1e-12:
            continue  # parallel in the image: no finite vanishing point
        x_v, y_v = vp[:2] / vp[2]
        pitch = math.atan(-y_v)
        yaw = math.atan(x_v * math.cos(pitch))
        if abs(pitch) >= math.pi / 2 - 1e-3:
            continue
        unit = GroundProjector(camera, Mounting(height_m=1.0, pitch_rad=pitch, yaw_rad=yaw), max_range_m=1e6)
        ground_left, ground_right = unit.image_to_ground(left), unit.image_to_ground(right)
        if min(len(ground_left), len(ground_right)) < 2:
            continue
        # With the estimated yaw the lanes run along x in the vehicle frame: their y is the offset.
        width_1m = float(np.median(ground_left[:, 1]) - np.median(ground_right[:, 1]))
        if width_1m <= 0:
            continue
        pitches.append(pitch)
        yaws.append(yaw)
        heights.append(lane_width_m / width_1m)
        vps.append(camera.K[:2, :2] @ np.array([x_v, y_v]) + camera.K[:2, 2])
    if not pitches:
        raise ValueError("no frame with two lane boundaries that meet ahead of the camera: "
                         "cannot estimate the mounting")
    mounting = Mounting(height_m=float(np.median(heights)), pitch_rad=float(np.median(pitches)),
                        yaw_rad=float(np.median(yaws)))
    details = {"frames": len(pitches), "vanishing_point_px": np.median(np.asarray(vps), axis=0).tolist(),
               "pitch_deg": np.degrees(pitches).tolist(), "yaw_deg": np.degrees(yaws).tolist(),
               "height_m": heights, "lane_width_m": lane_width_m}
    return mounting, details
