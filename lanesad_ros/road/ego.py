"""The ego lane in the ground frame, filtered over time: a linear Kalman filter on a clothoid lane.

State (ground frame, REP 103: x forward, y left; the vehicle reference point at the origin):
``[y_c, slope, curvature, curvature_rate, delta_y]``: the lane centre line near the vehicle is
y(x) = y_c + slope x + curvature / 2 x^2 + curvature_rate / 6 x^3 and its two boundaries lie
``delta_y / 2`` either side of it along y. This is the clothoid road model of Dickmanns &
Mysliwetz (1992, "Recursive 3-D road and relative ego-state recognition", IEEE PAMI 14(2)) in
the vehicle frame, the form Mobileye-style lane interfaces report. Each measured ego boundary
(its cubic and the cubic's covariance from :mod:`lanesad_ros.road.boundary`) is a linear
measurement of the state: c0 = y_c +- delta_y / 2, c1 = slope, c2 = curvature / 2,
c3 = curvature_rate / 6; so one boundary alone still updates the lane (its width from memory).

Prediction: with the vehicle's motion between two frames (distance d = v dt along x and yaw
change dpsi = omega dt, from odometry), the lane is moved into the new vehicle frame
(small-angle clothoid transport: y_c += slope d + curvature d^2 / 2 + curvature_rate d^3 / 6
- d dpsi / 2, slope += curvature d + curvature_rate d^2 / 2 - dpsi, curvature +=
curvature_rate d); without it the state is held and the larger no-motion process noise
covers what the vehicle may have done. Frames without ego boundaries are predicted only,
flagged as such with the age of the last measurement, up to ``max_prediction_s``.

A lane change shows as the measured boundaries one lane width (delta_y) from where they were
predicted: the state then moves to the new lane (y_c -+ delta_y), keeping heading, curvature
and width, and the change is reported. Anything else far from the prediction restarts the
filter on the measurement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lanesad_ros.road.boundary import BoundaryFit
from lanesad_ros.road.motion import Motion

# Boundary cubic (c0..c3) from the state, for the left (+) and right (-) boundary.
_H_COMMON = np.array([[1.0, 0.0, 0.0, 0.0, 0.0],
                      [0.0, 1.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 0.5, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 1.0 / 6.0, 0.0]])
_H = {+1: _H_COMMON + np.outer([1.0, 0, 0, 0], [0, 0, 0, 0, 0.5]),
      -1: _H_COMMON + np.outer([1.0, 0, 0, 0], [0, 0, 0, 0, -0.5])}


@dataclass(frozen=True)
class EgoLaneConfig:
    """Filter settings. Process noise is given per second as 1-sigma rates of
    (y_c m, slope rad, curvature 1/m, curvature rate 1/m^2, width m) for a vehicle whose motion
    is known (``process_std``) and for one whose motion is not (``no_motion_std``: a car at
    30 m/s with a 1 degree heading error drifts 0.5 m/s sideways). ``initial_std``: 1 sigma of
    the state before the first measurement (around ``default_width_m``). ``max_prediction_s``:
    longest dropout predicted through before the estimate is invalid. ``gate_m``: largest
    distance (m) between a measured boundary and its prediction (after a lane-change shift)
    that is still the same lane; ``lane_change_width_std_m``: the width must be known at least
    this well (1 sigma, m) to tell a lane change. ``measurement_floor_std``: 1 sigma of what the
    detector gets wrong beyond a fit's own covariance, added to each boundary's (c0 m, c1, c2
    1/m, c3 1/m^2): a lane's whole image curve shifted or turned at once, which its points'
    scatter cannot show and which changes with the dash pattern passing under the car (measured
    on synthetic drives of known geometry: single-frame offset errors of 0.1-0.3 m at the
    dash period while the fits claimed 2-3 cm)."""

    process_std: tuple[float, ...] = (0.1, 0.01, 1e-3, 1e-4, 0.05)
    no_motion_std: tuple[float, ...] = (0.6, 0.05, 2e-3, 2e-4, 0.05)
    initial_std: tuple[float, ...] = (3.0, 0.2, 0.02, 1e-3, 0.5)
    default_width_m: float = 3.6
    max_prediction_s: float = 1.0
    gate_m: float = 0.9
    lane_change_width_std_m: float = 0.4
    measurement_floor_std: tuple[float, ...] = (0.08, 0.008, 2e-4, 5e-6)

    def __post_init__(self) -> None:
        for name in ("process_std", "no_motion_std", "initial_std"):
            values = getattr(self, name)
            if len(values) != 5 or not all(v > 0 for v in values):
                raise ValueError(f"EgoLaneConfig.{name} needs 5 values > 0, got {values}")
        if len(self.measurement_floor_std) != 4 or not all(v >= 0 for v in self.measurement_floor_std):
            raise ValueError(f"EgoLaneConfig.measurement_floor_std needs 4 values >= 0, got "
                             f"{self.measurement_floor_std}")
        for name in ("default_width_m", "max_prediction_s", "gate_m", "lane_change_width_std_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"EgoLaneConfig.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class EgoLaneEstimate:
    """What a planner gets (EgoLane.msg): REP 103 ground frame, metres, radians.

    ``lateral_offset``: vehicle left of the lane centre (+) at x = 0; ``heading_error``: vehicle
    heading minus lane heading (+ left); ``curvature`` (1/m, + left) and ``curvature_rate``
    (1/m^2) of the centre line; ``lane_width`` across the lane; ``covariance`` (5, 5) of these
    five in that order. ``predicted``: no measurement this frame; ``measurement_age`` (s);
    ``lane_change``: +1 left, -1 right, 0 none.
    """

    valid: bool
    predicted: bool = False
    measurement_age: float = math.nan
    lane_change: int = 0
    lateral_offset: float = math.nan
    heading_error: float = math.nan
    curvature: float = math.nan
    curvature_rate: float = math.nan
    lane_width: float = math.nan
    covariance: np.ndarray = field(default_factory=lambda: np.full((5, 5), np.nan))

    @property
    def variances(self) -> np.ndarray:
        return np.diag(self.covariance)


INVALID = EgoLaneEstimate(valid=False)


class EgoLaneFilter:
    """``update(stamp_s, left, right, motion) -> EgoLaneEstimate`` once per frame.

    ``left`` / ``right``: this frame's BoundaryFit of the ego lane's boundaries (None when not
    seen). ``motion``: the vehicle's motion (None: unknown). Counters: ``lane_changes``,
    ``restarts`` (measurements too far from the prediction), ``resets`` (:meth:`reset` calls).
    """

    def __init__(self, config: EgoLaneConfig = EgoLaneConfig()) -> None:
        self.config = config
        self.lane_changes = self.restarts = self.resets = 0
        self.x: np.ndarray | None = None
        self.P: np.ndarray | None = None
        self.stamp_s: float | None = None
        self.measured_s: float | None = None

    def reset(self) -> None:
        """Forget the lane (a new camera geometry, time going back); the next measurement starts afresh."""
        self.x = self.P = self.stamp_s = self.measured_s = None
        self.resets += 1

    def _initial(self) -> tuple[np.ndarray, np.ndarray]:
        x = np.array([0.0, 0.0, 0.0, 0.0, self.config.default_width_m])
        return x, np.diag(np.square(self.config.initial_std))

    def _predict(self, dt: float, motion: Motion | None) -> None:
        if dt <= 0.0:
            return
        if motion is None:
            F, u, rates = np.eye(5), np.zeros(5), self.config.no_motion_std
        else:
            d, dpsi = motion.speed_mps * dt, motion.yaw_rate_rps * dt
            F = np.array([[1.0, d, d * d / 2, d ** 3 / 6, 0.0],
                          [0.0, 1.0, d, d * d / 2, 0.0],
                          [0.0, 0.0, 1.0, d, 0.0],
                          [0.0, 0.0, 0.0, 1.0, 0.0],
                          [0.0, 0.0, 0.0, 0.0, 1.0]])
            u, rates = np.array([-d * dpsi / 2, -dpsi, 0.0, 0.0, 0.0]), self.config.process_std
        self.x = F @ self.x + u
        self.P = F @ self.P @ F.T + np.diag(np.square(rates)) * dt

    def _lane_shift(self, measured: dict[int, BoundaryFit]) -> int | None:
        """Where the measured boundaries sit against their prediction, in lane widths: 0 (the same
        lane), -1 (one width right of it: the vehicle crossed into the lane on its right, whose
        left boundary is the old right one), +1 (left), or None (nothing explains them)."""
        y_c, width = self.x[0], self.x[4]
        width_known = math.sqrt(self.P[4, 4]) <= self.config.lane_change_width_std_m
        shifts = (-1, 0, 1) if width_known else (0,)
        votes = set()
        for side, fit in measured.items():
            predicted = y_c + side * width / 2
            errors = {k: abs(fit.coef[0] - (predicted + k * width)) for k in shifts}
            best = min(errors, key=errors.get)
            if errors[best] > self.config.gate_m:
                return None
            votes.add(best)
        return votes.pop() if len(votes) == 1 else None

    def update(self, stamp_s: float, left: BoundaryFit | None, right: BoundaryFit | None,
               motion: Motion | None = None) -> EgoLaneEstimate:
        """One frame at ``stamp_s`` (s): predict to it, correct with the boundaries seen."""
        if self.stamp_s is not None and stamp_s < self.stamp_s:
            self.reset()  # time went back (a bag replayed from the start): the old lane means nothing
        measured = {side: fit for side, fit in ((+1, left), (-1, right)) if fit is not None}
        lane_change = 0
        if self.x is not None:
            self._predict(stamp_s - self.stamp_s, motion)
            if measured:
                shift = self._lane_shift(measured)
                if shift is None:
                    self.restarts += 1
                    self.x = None
                elif shift != 0:  # move the state to the new lane's centre, one width that way
                    jump = np.eye(5)
                    jump[0, 4] = shift
                    self.x, self.P = jump @ self.x, jump @ self.P @ jump.T
                    lane_change = shift
                    self.lane_changes += 1
        self.stamp_s = stamp_s
        if measured:
            if self.x is None:
                self.x, self.P = self._initial()
            self._correct(measured)
            self.measured_s = stamp_s
        if self.x is None or self.measured_s is None:
            return INVALID
        age = stamp_s - self.measured_s
        if age > self.config.max_prediction_s:
            self.x = self.P = self.measured_s = None
            return INVALID
        return self._estimate(predicted=not measured, age=age, lane_change=lane_change)

    def _correct(self, measured: dict[int, BoundaryFit]) -> None:
        H = np.vstack([_H[side] for side in measured])
        z = np.concatenate([fit.coef for fit in measured.values()])
        R = np.zeros((len(z), len(z)))
        floor = np.diag(np.square(self.config.measurement_floor_std))
        for i, fit in enumerate(measured.values()):
            R[4 * i:4 * i + 4, 4 * i:4 * i + 4] = fit.covariance + floor
        S = H @ self.P @ H.T + R
        K = np.linalg.solve(S, H @ self.P).T
        self.x = self.x + K @ (z - H @ self.x)
        I_KH = np.eye(5) - K @ H
        self.P = I_KH @ self.P @ I_KH.T + K @ R @ K.T  # Joseph form: stays symmetric positive
        self.P = 0.5 * (self.P + self.P.T)

    def _estimate(self, predicted: bool, age: float, lane_change: int) -> EgoLaneEstimate:
        y_c, slope, curvature, rate, delta_y = self.x
        norm = math.sqrt(1.0 + slope * slope)
        J = np.zeros((5, 5))
        J[0, 0] = -1.0
        J[1, 1] = -1.0 / (norm * norm)
        J[2, 2] = J[3, 3] = 1.0
        J[4, 4] = 1.0 / norm
        J[4, 1] = -delta_y * slope / norm ** 3
        return EgoLaneEstimate(valid=True, predicted=predicted, measurement_age=float(age), lane_change=lane_change,
                               lateral_offset=float(-y_c), heading_error=float(-math.atan(slope)),
                               curvature=float(curvature), curvature_rate=float(rate),
                               lane_width=float(delta_y / norm), covariance=J @ self.P @ J.T)
