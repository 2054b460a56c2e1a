"""The vehicle's motion for the ego-lane filter, from odometry, with the checks that keep bad odometry out.

Odometry (nav_msgs/Odometry on ROS) gives the forward speed and yaw rate of the vehicle frame
(``twist.twist.linear.x``, ``twist.twist.angular.z``: REP 103 base_link, m/s and rad/s, + left).
A sample is used for a camera frame only when it is recent (its stamp within ``max_age_s`` of
the frame's, either way), finite and plausible for a road vehicle; otherwise the filter runs
without motion and ``OdometryGate.motion_for`` says why, so the node can log and count it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Motion:
    """The vehicle's motion: forward ``speed_mps`` (m/s) and ``yaw_rate_rps`` (rad/s, + turning
    left), in the ground frame (REP 103 base_link)."""

    speed_mps: float
    yaw_rate_rps: float


MAX_SPEED_MPS = 100.0  # 360 km/h: faster is a unit or sign mistake, not a car
MAX_YAW_RATE_RPS = 3.0  # a car spinning faster than half a turn per second is no odometry to steer by


class OdometryGate:
    """Keeps the newest odometry sample; ``motion_for(stamp_s)`` -> (Motion or None, problem or None).

    Problems (the reason a frame runs without motion): ``none`` (no sample yet), ``stale``
    (its stamp more than ``max_age_s`` from the frame's), ``not_finite`` (NaN or infinite
    speed or yaw rate), ``implausible`` (beyond ``MAX_SPEED_MPS`` / ``MAX_YAW_RATE_RPS``).
    ``put`` may be called from another thread than ``motion_for`` (one tuple is swapped in).
    """

    PROBLEMS = ("none", "stale", "not_finite", "implausible")

    def __init__(self, max_age_s: float = 0.5) -> None:
        if not max_age_s > 0:
            raise ValueError(f"odometry max_age_s must be > 0, got {max_age_s}")
        self.max_age_s = max_age_s
        self._latest: tuple[float, float, float] | None = None  # (stamp s, speed, yaw rate)

    def put(self, stamp_s: float, speed_mps: float, yaw_rate_rps: float) -> None:
        self._latest = (float(stamp_s), float(speed_mps), float(yaw_rate_rps))

    def describe(self, stamp_s: float, problem: str) -> str:
        """A log line for ``problem`` at a frame stamped ``stamp_s``."""
        latest = self._latest
        if problem == "none" or latest is None:
            return "no odometry received yet"
        stamp, speed, yaw_rate = latest
        if problem == "stale":
            return (f"odometry is stale: its newest sample is stamped {stamp:.3f} s, the frame {stamp_s:.3f} s "
                    f"({abs(stamp_s - stamp):.3f} s apart, limit {self.max_age_s:.3f} s)")
        if problem == "not_finite":
            return f"odometry is not finite: speed {speed} m/s, yaw rate {yaw_rate} rad/s"
        return (f"odometry is implausible: speed {speed:.1f} m/s (limit {MAX_SPEED_MPS:.0f}), yaw rate "
                f"{yaw_rate:.2f} rad/s (limit {MAX_YAW_RATE_RPS:.1f})")

    def motion_for(self, stamp_s: float) -> tuple[Motion | None, str | None]:
        """The motion to predict the frame at ``stamp_s`` with, or (None, why not)."""
        latest = self._latest
        if latest is None:
            return None, "none"
        stamp, speed, yaw_rate = latest
        if not (math.isfinite(speed) and math.isfinite(yaw_rate) and math.isfinite(stamp)):
            return None, "not_finite"
        if abs(stamp_s - stamp) > self.max_age_s:
            return None, "stale"
        if abs(speed) > MAX_SPEED_MPS or abs(yaw_rate) > MAX_YAW_RATE_RPS:
            return None, "implausible"
        return Motion(speed, yaw_rate), None
