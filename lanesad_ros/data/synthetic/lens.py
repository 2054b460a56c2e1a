"""Lens of a synthetic camera: barrel distortion and roll applied to a rendered pinhole frame.

The scene is rendered through an ideal pinhole camera with no roll; ``Lens`` then warps the
image (``cv2.remap``) and maps the label points with the same model, so labels move with the
pixels. The model is the one-parameter division-style radial model of Fitzgibbon (CVPR 2001,
"Simultaneous linear estimation of multiple view geometry and lens distortion") written in
the distorted-to-ideal direction, so the image warp is closed-form and only the few label
points need an iterative inverse:

    u = s * R(-roll) * d * (1 + k * |d|^2)

with d the output pixel and u the ideal pixel, both relative to the image centre and divided
by the half-diagonal. k > 0 is barrel distortion (wide-angle lenses); s <= 1 zooms in just
enough that every output pixel sees the rendered frame (no black corners).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=8)
def _pixel_grid(width: int, height: int):
    """Output pixel coordinates relative to the centre, in half-diagonals (float32), and r^2."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    norm = float(np.hypot(cx, cy))
    dx = ((np.arange(width, dtype=np.float32) - cx) / norm)[None, :].repeat(height, 0)
    dy = ((np.arange(height, dtype=np.float32) - cy) / norm)[:, None].repeat(width, 1)
    dx, dy = dx.astype(np.float32), dy.astype(np.float32)
    return dx, dy, dx * dx + dy * dy


class Lens:
    """Barrel distortion ``k`` (>= 0, radius in half-diagonals) and roll (radians) for one frame."""

    def __init__(self, width: int, height: int, k: float = 0.0, roll: float = 0.0):
        if k < 0:
            raise ValueError(f"barrel distortion k must be >= 0, got {k}")
        self.width, self.height = int(width), int(height)
        self.k, self.roll = float(k), float(roll)
        self.cx, self.cy = (self.width - 1) / 2.0, (self.height - 1) / 2.0
        self.norm = float(np.hypot(self.cx, self.cy))
        self.scale = 1.0
        # The output border must land inside the rendered frame: scale the ideal coordinates.
        t = np.linspace(0.0, 1.0, 65, dtype=np.float64)
        w, h = self.width - 1.0, self.height - 1.0
        bx = np.concatenate([t * w, np.full_like(t, w), t * w, np.zeros_like(t)])
        by = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), t * h])
        ux, uy = self._to_ideal(bx, by)
        over = max(np.max(np.abs(ux - self.cx)) / self.cx, np.max(np.abs(uy - self.cy)) / self.cy)
        self.scale = 1.0 / max(over, 1.0)

    def _to_ideal(self, x, y):
        dx, dy = (x - self.cx) / self.norm, (y - self.cy) / self.norm
        f = self.scale * (1.0 + self.k * (dx * dx + dy * dy))
        ux, uy = dx * f, dy * f
        c, s = np.cos(self.roll), np.sin(self.roll)
        return self.cx + (c * ux + s * uy) * self.norm, self.cy + (-s * ux + c * uy) * self.norm

    def to_ideal(self, points: np.ndarray) -> np.ndarray:
        """Output image points (N, 2) -> where they are in the rendered pinhole frame."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        x, y = self._to_ideal(p[:, 0], p[:, 1])
        return np.stack([x, y], 1).astype(np.float32)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Rendered (pinhole) points (N, 2) -> output image points: the inverse of ``to_ideal``."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        ux, uy = (p[:, 0] - self.cx) / self.norm, (p[:, 1] - self.cy) / self.norm
        c, s = np.cos(self.roll), np.sin(self.roll)
        rx, ry = c * ux - s * uy, s * ux + c * uy
        ru = np.hypot(rx, ry) / self.scale
        rd = ru.copy()
        for _ in range(8):  # Newton on rd * (1 + k rd^2) = ru (monotonic for k >= 0)
            rd -= (rd * (1.0 + self.k * rd * rd) - ru) / (1.0 + 3.0 * self.k * rd * rd)
        ratio = np.where(ru > 1e-12, rd / np.maximum(ru, 1e-12), 1.0) / self.scale
        x, y = self.cx + rx * ratio * self.norm, self.cy + ry * ratio * self.norm
        return np.stack([x, y], 1).astype(np.float32)

    def warp(self, image: np.ndarray) -> np.ndarray:
        """The output image: each pixel sampled (bilinear) from the rendered frame."""
        dx, dy, r2 = _pixel_grid(self.width, self.height)
        f = r2 * np.float32(self.scale * self.k * self.norm)
        f += np.float32(self.scale * self.norm)
        ux, uy = dx * f, dy * f
        c, s = np.float32(np.cos(self.roll)), np.float32(np.sin(self.roll))
        mx = c * ux + s * uy + np.float32(self.cx)
        my = c * uy - s * ux + np.float32(self.cy)
        return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
