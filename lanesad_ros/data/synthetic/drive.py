"""A drive's camera view through the true camera model, with the exact ground truth of each frame.

Unlike ``SceneGenerator`` (image-space scenes for training), this renders a ``Road`` in world
coordinates as the camera on a moving car sees it: every ground polygon (road surface,
shoulders, each painted dash or solid line, the median barrier, roadside trees) is built in
metres, moved into the vehicle frame of the pose and projected with
``camera.GroundProjector.ground_to_image`` (pinhole + OpenCV distortion + mounting): the
very model the node uses to put lane pixels back on the ground, so a boundary's pixels
project back onto its true position exactly.

The default camera is TuSimple-like: 1280x720, focal 1000 px, 1.5 m high, horizon at 37.5 %
of the height (inside the 30 % top crop of the shipped network), 1.8 m ahead of the rear
axle (``base_link``). A frame is a pure function of (road, seed, pose).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lanesad_ros.camera import CameraModel, GroundProjector, Mounting
from lanesad_ros.data.synthetic.geometry import _SHIFT, _fx, _lowres_noise
from lanesad_ros.data.synthetic.render import _tree
from lanesad_ros.data.synthetic.road import BoundaryTruth, EgoLaneTruth, Pose, Road
from lanesad_ros.data.synthetic.scenery import _WHITE, _YELLOW

NEAR_M = 1.0    # polygons start this far ahead of the camera (the image bottom sees ~3 m ahead)
FAR_M = 300.0   # and end this far ahead of the vehicle (5 px below the horizon with the default camera)


def default_drive_camera(width: int = 1280, height: int = 720) -> tuple[CameraModel, Mounting]:
    """The TuSimple-like camera of the closed-loop drives (see the module docstring), any image size."""
    f = 1000.0 * width / 1280.0
    K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    horizon = 0.375 * height
    pitch = math.atan((height / 2.0 - horizon) / f)
    return CameraModel(K=K, dist=np.zeros(5), width=width, height=height), Mounting(height_m=1.5, pitch_rad=pitch,
                                                                                    x_m=1.8)


def camera_parameters(camera: CameraModel, mounting: Mounting, ground_frame_id: str = "base_link") -> dict:
    """The lane_detector node's camera-model parameters for this camera (``--params-file`` values)."""
    return {"fx": float(camera.K[0, 0]), "fy": float(camera.K[1, 1]), "cx": float(camera.K[0, 2]),
            "cy": float(camera.K[1, 2]), "dist": [float(v) for v in camera.dist] or [0.0] * 5,
            "image_width": camera.width, "image_height": camera.height, "camera_height": mounting.height_m,
            "camera_x": mounting.x_m, "camera_y": mounting.y_m, "pitch": mounting.pitch_rad,
            "roll": mounting.roll_rad, "yaw": mounting.yaw_rad, "ground_frame_id": ground_frame_id}


@dataclass
class DriveFrame:
    """One rendered frame: BGR ``image`` (H, W, 3 uint8), the ``pose`` it was seen from, and the
    ground truth: ``ego`` lane at the vehicle and every ``boundaries`` entry in the vehicle frame."""

    image: np.ndarray
    pose: Pose
    ego: EgoLaneTruth
    boundaries: list[BoundaryTruth]


class DriveRenderer:
    """Renders ``road`` from a car's camera: ``render(pose) -> DriveFrame``.

    ``camera`` / ``mounting``: the camera model (default :func:`default_drive_camera`);
    ``seed`` picks the road colour, roadside and texture; ``truth_x_max`` how far ahead the
    boundary ground truth reaches (m).
    """

    def __init__(self, road: Road, camera: CameraModel | None = None, mounting: Mounting | None = None,
                 seed: int = 0, truth_x_max: float = 60.0):
        if (camera is None) != (mounting is None):
            raise ValueError("give both camera and mounting, or neither (the default camera)")
        if camera is None:
            camera, mounting = default_drive_camera()
        self.road, self.camera, self.mounting = road, camera, mounting
        self.projector = GroundProjector(camera, mounting, max_range_m=1e5)
        self._rotation, self._centre = mounting.rotation(), mounting.position()
        self._r_max = math.inf  # lens distortion holds inside the image; beyond it, see _project
        if np.any(camera.dist):
            corners = np.array([[0, 0], [camera.width, 0], [0, camera.height], [camera.width, camera.height]], float)
            self._r_max = 1.1 * float(np.max(np.hypot(*camera.normalised_rays(corners).T)))
        self.truth_x_max = truth_x_max
        rng = np.random.default_rng([seed, 0xD21E])
        grey = rng.uniform(95.0, 135.0)
        self._asphalt = np.clip(np.array([grey, grey, grey]) + rng.uniform(-5, 5, 3), 0, 255)
        self._shoulder = np.clip(self._asphalt * rng.uniform(1.05, 1.2), 0, 255)
        self._paint = {"white": _WHITE * rng.uniform(0.9, 1.0), "yellow": _YELLOW}
        self._barrier = rng.uniform(150, 200)
        self._background = self._render_background(rng)
        self._grain = self._render_grain(rng)
        self._trees = self._place_trees(rng)
        self.seed = seed

    # --- static parts (the camera is rigid on the car and the world is flat)
    def _render_background(self, rng) -> np.ndarray:
        """Sky gradient above the horizon, grass below it (a far ground fan, so any roll or yaw is right)."""
        W, H = self.camera.width, self.camera.height
        top = np.array([rng.uniform(150, 210), rng.uniform(110, 150), rng.uniform(60, 110)])
        bottom = np.array([rng.uniform(205, 240), rng.uniform(195, 230), rng.uniform(180, 215)])
        col = np.linspace(top, bottom, 16, dtype=np.float32)[:, None, :]
        img = np.clip(cv2.resize(col, (W, H), interpolation=cv2.INTER_LINEAR), 0, 255).astype(np.uint8)
        angles = np.radians(np.linspace(-89.0, 89.0, 181))
        far = np.stack([2000.0 * np.cos(angles), 2000.0 * np.sin(angles), np.zeros_like(angles)], 1)
        near = np.array([[self.mounting.x_m + NEAR_M, 1e3, 0.0], [self.mounting.x_m + NEAR_M, -1e3, 0.0]])
        fan = self._project(np.concatenate([far, near]))
        fan = fan[np.all(np.isfinite(fan), axis=1)]
        g = rng.uniform(70, 120)
        grass = np.array([g * rng.uniform(0.55, 0.75), g, g * rng.uniform(0.75, 0.95)])
        cv2.fillPoly(img, [_fx(fan)], grass.tolist(), cv2.LINE_AA, _SHIFT)
        return img

    def _render_grain(self, rng) -> tuple[np.ndarray, np.ndarray]:
        """Fixed road-texture grain, split in what to add and what to subtract (uint8 saturating ops)."""
        W, H = self.camera.width, self.camera.height
        n = rng.normal(0.0, 1.0, (H, W)).astype(np.float32)
        n = cv2.GaussianBlur(n, (0, 0), 0.8) * 6.0 + _lowres_noise(rng, (H, W), (8, 14)) * 5.0
        n3 = cv2.merge([n, n, n])
        return np.clip(n3, 0, 255).astype(np.uint8), np.clip(-n3, 0, 255).astype(np.uint8)

    def _place_trees(self, rng) -> list[tuple[float, float, float, int]]:
        """(station, lateral offset, height m, look seed) of the roadside trees."""
        edge = self.road.boundary_offset(0) + self.road.shoulder_m
        trees, s = [], float(rng.uniform(0, 20))
        while s < self.road.length_m:
            for side in (1.0, -1.0):
                if rng.random() < 0.6:
                    d = side * (edge + rng.uniform(6.0, 25.0))
                    trees.append((s + rng.uniform(-5, 5), d, rng.uniform(6.0, 14.0), int(rng.integers(1 << 30))))
            s += rng.uniform(12.0, 35.0)
        return trees

    # --- per frame
    def _to_px(self, pose: Pose, world_xy: np.ndarray, z: float | np.ndarray = 0.0) -> np.ndarray:
        veh = pose.to_vehicle(world_xy)
        zs = np.broadcast_to(np.asarray(z, np.float64), (len(veh),))
        return self._project(np.column_stack([veh, zs]))

    def _project(self, points: np.ndarray) -> np.ndarray:
        """Vehicle-frame (N, 3) -> pixels, NaN behind the camera. Inside ``_r_max`` (the image plus a
        margin, in normalised radius) exactly ``GroundProjector.ground_to_image``; beyond it the
        distortion polynomial of a real lens folds back, so the polygon corners out there are
        placed along their ray, scaled from the distorted edge radius (continuous, monotonic)."""
        if math.isinf(self._r_max):
            return self.projector.ground_to_image(points)
        cam = (points - self._centre) @ self._rotation
        out = np.full((len(cam), 2), np.nan)
        front = cam[:, 2] > 1e-9
        n = cam[front, :2] / cam[front, 2:3]
        r = np.hypot(n[:, 0], n[:, 1])
        scale = np.maximum(r / self._r_max, 1.0)
        edge = np.column_stack([n / scale[:, None], np.ones(len(n))])
        px, _ = cv2.projectPoints(edge.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), self.camera.K, self.camera.dist)
        principal = self.camera.K[:2, 2]
        out[front] = principal + (px.reshape(-1, 2) - principal) * scale[:, None]
        return out

    def _strip(self, pose: Pose, s: np.ndarray, d_left: float, d_right: float, z: tuple[float, float] = (0.0, 0.0)
               ) -> np.ndarray | None:
        """Polygon (pixels) of the road band between two lateral offsets over stations ``s`` (a vertical
        band between heights ``z`` when both offsets are equal)."""
        a = self._to_px(pose, self.road.points(s, d_left), z[0])
        b = self._to_px(pose, self.road.points(s, d_right), z[1])
        poly = np.concatenate([a, b[::-1]])
        poly = poly[np.all(np.isfinite(poly), axis=1)]
        return poly if len(poly) >= 3 else None

    def render(self, pose: Pose, s_hint: float | None = None) -> DriveFrame:
        """The camera image at ``pose`` (rear axle, world frame) and its ground truth."""
        road = self.road
        ego = road.ego_lane(pose, s_hint)
        img = self._background.copy()
        s0 = ego.s_m + self.mounting.x_m + NEAR_M
        s1 = min(ego.s_m + FAR_M, road.length_m)
        if s1 > s0:
            # Stations spaced geometrically: as dense in the image near the car as far from it.
            s = s0 + (s1 - s0) * (np.geomspace(1.0, 101.0, 64) - 1.0) / 100.0
            left, right = road.boundary_offset(0), road.boundary_offset(road.lanes)
            road_poly = self._strip(pose, s, left + road.shoulder_m, right - road.shoulder_m)
            if road_poly is not None:
                cv2.fillPoly(img, [_fx(road_poly)], self._shoulder.tolist(), cv2.LINE_AA, _SHIFT)
            lanes_poly = self._strip(pose, s, left + 0.3, right - 0.3)
            if lanes_poly is not None:
                cv2.fillPoly(img, [_fx(lanes_poly)], self._asphalt.tolist(), cv2.LINE_AA, _SHIFT)
            self._draw_markings(img, pose, s0, s1, s)
            self._draw_barrier(img, pose, s)
            img = cv2.add(img, self._grain[0])
            img = cv2.subtract(img, self._grain[1])
        self._draw_trees(img, pose, ego.s_m)
        boundaries = road.boundaries(pose, 0.0, self.truth_x_max, ego=ego)
        return DriveFrame(image=img, pose=pose, ego=ego, boundaries=boundaries)

    def _draw_markings(self, img, pose: Pose, s0: float, s1: float, s: np.ndarray) -> None:
        polys: dict[str, list] = {"white": [], "yellow": []}
        for j, marking in enumerate(self.road.markings):
            d = self.road.boundary_offset(j)
            half = marking.width_m / 2.0
            if marking.kind == "solid":
                pieces = [s]
            else:  # dashes anchored on the road's stations: they stay put as the car drives by
                period = marking.dash_m + marking.gap_m
                first = math.floor(s0 / period) * period
                pieces = []
                for start in np.arange(first, s1, period):
                    a, b = max(start, s0), min(start + marking.dash_m, s1)
                    if b > a:
                        pieces.append(np.linspace(a, b, 4))
            for piece in pieces:
                poly = self._strip(pose, piece, d + half, d - half)
                if poly is not None:
                    polys[marking.colour].append(_fx(poly))
        for colour, group in polys.items():
            if group:
                paint = self._paint[colour]
                cv2.fillPoly(img, group, paint.tolist(), cv2.LINE_AA, _SHIFT)

    def _draw_barrier(self, img, pose: Pose, s: np.ndarray) -> None:
        """A concrete median barrier (0.8 m) beyond the left shoulder."""
        d = self.road.boundary_offset(0) + self.road.shoulder_m + 0.3
        face = self._strip(pose, s, d, d, z=(0.0, 0.8))
        if face is not None:
            c = self._barrier
            cv2.fillPoly(img, [_fx(face)], (c, c, c * 1.02), cv2.LINE_AA, _SHIFT)
            base = self._to_px(pose, self.road.points(s, d))
            base = base[np.all(np.isfinite(base), axis=1)]
            cv2.polylines(img, [_fx(base)], False, (c * 0.5,) * 3, 2, cv2.LINE_AA, _SHIFT)

    def _draw_trees(self, img, pose: Pose, s_car: float) -> None:
        near = [t for t in self._trees if s_car + 5.0 < t[0] < s_car + 200.0]
        for s, d, height, look in sorted(near, key=lambda t: -t[0]):  # far to near
            base = self.road.points(np.array([s]), d)
            if pose.to_vehicle(base)[0, 0] < self.mounting.x_m + 3.0:
                continue
            px = self._to_px(pose, np.repeat(base, 2, axis=0), np.array([0.0, height]))
            if not np.all(np.isfinite(px)):
                continue
            (x, y), (_, y_top) = px
            h_px = y - y_top
            if h_px < 2 or not (-h_px < x < self.camera.width + h_px):
                continue
            tree_rng = np.random.default_rng(look)
            colour = np.array([tree_rng.uniform(25, 60), tree_rng.uniform(50, 95), tree_rng.uniform(35, 70)])
            _tree(img, tree_rng, x, y, h_px, colour, 1.0)
