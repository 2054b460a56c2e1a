"""Test-side helpers for lanesad_ros.road: cameras, ground lanes seen as a detector would report
them, and a flat road painted with known markings through a camera model."""
from __future__ import annotations

import math

import cv2
import numpy as np
import yaml

from conftest import REPO_ROOT
from lanesad_ros.camera import CameraModel, GroundProjector, Mounting
from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot

UDACITY_PARAMS = REPO_ROOT / "demo" / "udacity" / "lane_detector.yaml"
ROWS_720 = np.arange(710.0, 250.0, -10.0)  # detector-like sample rows, bottom up


def udacity_projector() -> GroundProjector:
    """The bundled Udacity clip's calibrated camera (strong barrel distortion) and mounting."""
    p = yaml.safe_load(UDACITY_PARAMS.read_text())["/**/lane_detector"]["ros__parameters"]
    camera = CameraModel(K=[[p["fx"], 0, p["cx"]], [0, p["fy"], p["cy"]], [0, 0, 1]], dist=p["dist"],
                         width=p["image_width"], height=p["image_height"])
    return GroundProjector(camera, Mounting(height_m=p["camera_height"], pitch_rad=p["pitch"], yaw_rad=p["yaw"]))


def pinhole_projector(width: int = 1280, height: int = 720, height_m: float = 1.5, pitch_deg: float = 2.0,
                      x_m: float = 1.8) -> GroundProjector:
    """A TuSimple-like pinhole camera (focal 1000 px at 1280 wide), ``x_m`` ahead of the ground frame origin."""
    f = 1000.0 * width / 1280.0
    camera = CameraModel(K=[[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dist=np.zeros(5),
                         width=width, height=height)
    return GroundProjector(camera, Mounting(height_m=height_m, pitch_rad=math.radians(pitch_deg), x_m=x_m))


def lane_pixels(projector: GroundProjector, coef, rows=None, x_far: float = 200.0) -> np.ndarray:
    """(N, 2) pixels of the ground cubic y(x) = coef at image ``rows`` (bottom up), as a detector
    reports a lane: rows where the lane is in the image, columns interpolated along its projection."""
    rows = ROWS_720 * projector.camera.height / 720.0 if rows is None else rows
    x = np.geomspace(0.5, x_far, 4000)
    ground = np.stack([x, np.polynomial.polynomial.polyval(x, coef), np.zeros_like(x)], axis=1)
    px = projector.ground_to_image(ground)
    ok = np.all(np.isfinite(px), axis=1)
    px = px[ok][::-1]  # far (top) first: rows ascending
    keep = (rows >= px[0, 1]) & (rows <= px[-1, 1])
    cols = np.interp(rows[keep], px[:, 1], px[:, 0])
    inside = (cols >= 0) & (cols <= projector.camera.width - 1)
    return np.stack([cols[inside], rows[keep][inside]], axis=1)


def detections(projector: GroundProjector, lanes: dict[LaneSlot, list[float]], rng=None,
               jitter_px: float = 0.0) -> LaneDetections:
    """LaneDetections of ground cubics per slot, optionally with per-point pixel noise."""
    out = []
    for slot, coef in lanes.items():
        px = lane_pixels(projector, coef)
        if rng is not None and jitter_px > 0:
            px = px + np.column_stack([rng.normal(0, jitter_px, len(px)), np.zeros(len(px))])
        out.append(Lane(slot=slot, confidence=0.9, image_points=px))
    return LaneDetections(lanes=out, image_width=projector.camera.width, image_height=projector.camera.height)


PAINT = {"white": (235, 238, 240), "yellow": (40, 185, 225)}  # BGR, as the synthetic renderers paint


def _ground_polygon(projector, xs, y_left, y_right) -> np.ndarray | None:
    """Pixels of the ground quad between two lateral offsets along x samples (dense: perspective-exact)."""
    left = np.stack([xs, y_left, np.zeros_like(xs)], axis=1)
    right = np.stack([xs, y_right, np.zeros_like(xs)], axis=1)[::-1]
    px = projector.ground_to_image(np.concatenate([left, right]))
    if not np.all(np.isfinite(px)):
        return None
    return np.round(px * 8).astype(np.int32)


def paint_road(projector: GroundProjector, markings: list[dict], seed: int = 0, road_grey: float = 105.0,
               x_range: tuple[float, float] = (2.0, 80.0)) -> np.ndarray:
    """A BGR image of a flat asphalt road (grey with texture noise) and sky, with ground markings.

    Each marking: ``y`` (m, + left, straight along x), ``kind`` solid | dashed | double | dots,
    ``colour`` white | yellow, optional ``width`` (0.15 m), ``dash`` / ``gap`` (3 / 9 m),
    ``phase`` (m), ``alpha`` (paint strength, 1 = fresh).
    """
    rng = np.random.default_rng(seed)
    h, w = projector.camera.height, projector.camera.width
    img = np.empty((h, w, 3), np.float32)
    img[:] = (200, 170, 140)  # sky
    road = _ground_polygon(projector, np.geomspace(*x_range, 60), np.full(60, 15.0), np.full(60, -15.0))
    cv2.fillPoly(img, [road], (road_grey, road_grey, road_grey), cv2.LINE_AA, 3)
    for m in markings:
        colour = np.array(PAINT[m["colour"]], np.float32)
        paint = tuple((road_grey + (colour - road_grey) * m.get("alpha", 1.0)).tolist())
        width = m.get("width", 0.15)
        lines = [m["y"] + 0.15, m["y"] - 0.15] if m["kind"] == "double" else [m["y"]]
        for y in lines:
            if m["kind"] == "dots":
                for x in np.arange(x_range[0] + m.get("phase", 0.0), x_range[1], m.get("gap", 1.2)):
                    angle = np.linspace(0, 2 * np.pi, 16)
                    ring = np.stack([x + 0.05 * np.cos(angle), y + 0.05 * np.sin(angle), np.zeros(16)], axis=1)
                    px = projector.ground_to_image(ring)
                    if np.all(np.isfinite(px)):
                        cv2.fillPoly(img, [np.round(px * 8).astype(np.int32)], paint, cv2.LINE_AA, 3)
                continue
            if m["kind"] == "dashed":
                period = m.get("dash", 3.0) + m.get("gap", 9.0)
                starts = np.arange(x_range[0] - period + m.get("phase", 0.0) % period, x_range[1], period)
                pieces = [(max(a, x_range[0]), min(a + m.get("dash", 3.0), x_range[1])) for a in starts]
            else:
                pieces = [x_range]
            for a, b in pieces:
                if b > a:
                    xs = np.linspace(a, b, 12)
                    poly = _ground_polygon(projector, xs, np.full(12, y + width / 2), np.full(12, y - width / 2))
                    if poly is not None:
                        cv2.fillPoly(img, [poly], paint, cv2.LINE_AA, 3)
    img += rng.normal(0.0, 4.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def colour_cast(bgr: np.ndarray, gains_bgr=(0.55, 0.8, 1.0), exposure: float = 0.55) -> np.ndarray:
    """A white-balance / dusk change: per-channel gains on linear light, then darker exposure."""
    linear = (bgr.astype(np.float32) / 255.0) ** 2.2 * np.array(gains_bgr, np.float32) * exposure
    return np.clip(linear ** (1 / 2.2) * 255.0, 0, 255).astype(np.uint8)
