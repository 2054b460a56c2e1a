"""Lane keeping from detected lane boundaries: the lane centre line, then pure pursuit (no ROS).

Frames: REP 103 ``base_link`` at the rear axle (x forward, y left, metres), the frame the
lane_detector node puts ``Lane.ground_points`` in when its ``camera_x`` is the camera's
distance ahead of the rear axle. Angles in radians; curvature in 1/m, positive to the left.

Pure pursuit (Coulter, *Implementation of the Pure Pursuit Path Tracking Algorithm*,
CMU-RI-TR-92-01, 1992): steer onto the circular arc through the rear axle, tangent to the
heading, that meets the path at the goal point ``L_d`` ahead: curvature ``2 y_g / L_d^2``,
front wheel angle ``atan(wheelbase * curvature)``. With the lookahead growing with speed
(``L_d = max(min_lookahead, speed * lookahead_time)``) it tracks a circle with no
steady-state offset and damps lateral errors over about ``L_d``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# Lane.msg slots of the ego lane's boundaries.
LEFT, RIGHT = 1, 2


@dataclass
class CentreLine:
    """The ego lane's centre line in base_link: ``y(x) = sum(coeffs[i] x^i)``; ``width_m`` the
    lane width it was built with; ``source``: which boundaries it came from (both | left | right | model)."""

    coeffs: np.ndarray
    width_m: float
    source: str

    def y_at(self, x):
        return np.polynomial.polynomial.polyval(x, self.coeffs)

    @classmethod
    def from_ego_lane(cls, lateral_offset_m: float, heading_error_rad: float, curvature: float,
                      width_m: float, curvature_rate: float = 0.0) -> CentreLine:
        """From an ego-lane estimate (lanesad_ros/EgoLane): the vehicle ``lateral_offset_m`` left of
        the centre, pointing ``heading_error_rad`` left of the lane, on a lane of ``curvature``
        changing by ``curvature_rate`` per metre (the clothoid's cubic, as EgoLane.msg gives it)."""
        coeffs = np.array([-lateral_offset_m, -math.tan(heading_error_rad), curvature / 2.0, curvature_rate / 6.0])
        return cls(coeffs, width_m, "model")


def fit_boundary(points: np.ndarray, x_max: float = 40.0, degree: int = 2, min_points: int = 4) -> np.ndarray | None:
    """Least-squares ``y(x)`` polynomial (coefficients low to high) of a boundary's (N, 2+) ground
    points up to ``x_max`` ahead, or None with fewer than ``min_points`` there. A quadratic is
    the clothoid road model to second order; far points, where a pixel spans metres, are left out."""
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"boundary points must be (N, 2) or (N, 3), got shape {pts.shape}")
    pts = pts[:, :2]
    pts = pts[(pts[:, 0] > 0) & (pts[:, 0] <= x_max)]
    if len(pts) < min_points:
        return None
    deg = min(degree, len(pts) - 2)
    return np.polynomial.polynomial.polyfit(pts[:, 0], pts[:, 1], deg)


class CentreEstimator:
    """The ego lane's centre line from its boundaries' ground points, frame by frame.

    Both boundaries: the mean of their fits, and the lane width (their distance at the vehicle)
    is remembered. One boundary: shifted by half the remembered width (``default_width_m``
    until both were seen). Widths outside ``width_range_m`` are taken as a misdetection.
    """

    def __init__(self, default_width_m: float = 3.6, fit_x_max: float = 40.0,
                 width_range_m: tuple[float, float] = (2.5, 5.0), width_smoothing: float = 0.2):
        self.width_m = default_width_m
        self.fit_x_max, self.width_range_m, self.width_smoothing = fit_x_max, width_range_m, width_smoothing

    def update(self, boundaries: Mapping[int, np.ndarray]) -> CentreLine | None:
        """``boundaries``: slot -> (N, 2 or 3) ground points. None when neither ego boundary can be fitted."""
        left = fit_boundary(boundaries[LEFT], self.fit_x_max) if LEFT in boundaries else None
        right = fit_boundary(boundaries[RIGHT], self.fit_x_max) if RIGHT in boundaries else None
        if left is not None and right is not None:
            n = max(len(left), len(right))
            left, right = np.pad(left, (0, n - len(left))), np.pad(right, (0, n - len(right)))
            width = float(left[0] - right[0])
            if self.width_range_m[0] <= width <= self.width_range_m[1]:
                self.width_m += self.width_smoothing * (width - self.width_m)
                return CentreLine((left + right) / 2.0, width, "both")
            return None  # boundaries too close or too far apart: one of them is not ours
        if left is not None:
            shifted = left.copy()
            shifted[0] -= self.width_m / 2.0
            return CentreLine(shifted, self.width_m, "left")
        if right is not None:
            shifted = right.copy()
            shifted[0] += self.width_m / 2.0
            return CentreLine(shifted, self.width_m, "right")
        return None


@dataclass
class PurePursuit:
    """Front wheel angle that steers the rear axle onto ``CentreLine`` (module docstring)."""

    wheelbase_m: float = 2.8
    lookahead_time_s: float = 1.0
    min_lookahead_m: float = 8.0
    max_steer_rad: float = 0.5

    def __post_init__(self) -> None:
        if not (self.wheelbase_m > 0 and self.min_lookahead_m > 0 and self.lookahead_time_s >= 0):
            raise ValueError("wheelbase_m and min_lookahead_m must be > 0, lookahead_time_s >= 0")

    def lookahead_m(self, speed_mps: float) -> float:
        return max(self.min_lookahead_m, abs(speed_mps) * self.lookahead_time_s)

    def goal(self, centre: CentreLine, lookahead_m: float) -> tuple[float, float]:
        """The point of the centre line ``lookahead_m`` from the rear axle (ahead of it)."""
        x = lookahead_m
        for _ in range(4):  # x^2 + y(x)^2 = L^2: y is small against L, so this converges fast
            y = float(centre.y_at(x))
            x = math.sqrt(max(lookahead_m**2 - y**2, 1e-6))
        return x, float(centre.y_at(x))

    def steer(self, centre: CentreLine, speed_mps: float) -> float:
        """Front wheel angle (rad, positive left), within the steering limit."""
        lookahead = self.lookahead_m(speed_mps)
        _, y = self.goal(centre, lookahead)
        curvature = 2.0 * y / lookahead**2
        delta = math.atan(self.wheelbase_m * curvature)
        return max(-self.max_steer_rad, min(self.max_steer_rad, delta))
