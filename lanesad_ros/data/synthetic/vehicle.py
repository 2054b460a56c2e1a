"""The simulated car: a kinematic bicycle model about the rear axle.

    x' = v cos(psi),  y' = v sin(psi),  psi' = v tan(delta) / L

(Rajamani, *Vehicle Dynamics and Control*, 2nd ed., sec. 2.2; the model pure pursuit is
derived for: Coulter, *Implementation of the Pure Pursuit Path Tracking Algorithm*,
CMU-RI-TR-92-01). With the steering angle held over a step the car drives an exact arc, so
the step size never adds integration error. Slip is ignored: at highway speeds on curves of
250 m and more the lateral acceleration stays under 0.2 g, where the kinematic model holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from lanesad_ros.data.synthetic.road import Pose


@dataclass
class KinematicBicycle:
    """State: ``pose`` (rear axle, world frame), ``speed_mps``; ``wheelbase_m``, steering limit
    ``max_steer_rad`` (front wheel angle, positive left)."""

    pose: Pose
    speed_mps: float
    wheelbase_m: float = 2.8
    max_steer_rad: float = 0.5

    def __post_init__(self) -> None:
        if not self.wheelbase_m > 0:
            raise ValueError(f"wheelbase_m must be > 0, got {self.wheelbase_m}")

    def step(self, steer_rad: float, dt: float) -> Pose:
        """Drive ``dt`` seconds with the front wheels at ``steer_rad`` (clipped to the limit); the new pose."""
        if dt < 0:
            raise ValueError(f"dt must be >= 0, got {dt}")
        delta = max(-self.max_steer_rad, min(self.max_steer_rad, float(steer_rad)))
        distance = self.speed_mps * dt
        k = math.tan(delta) / self.wheelbase_m
        x, y, psi = self.pose.x, self.pose.y, self.pose.heading
        dpsi = k * distance
        if abs(dpsi) < 1e-9:
            x += distance * math.cos(psi)
            y += distance * math.sin(psi)
        else:  # exact arc of radius 1/k
            x += (math.sin(psi + dpsi) - math.sin(psi)) / k
            y += (math.cos(psi) - math.cos(psi + dpsi)) / k
        self.pose = Pose(x, y, psi + dpsi)
        return self.pose

    def yaw_rate(self, steer_rad: float) -> float:
        """Yaw rate (rad/s) the car turns at with ``steer_rad`` at its speed."""
        return self.speed_mps * math.tan(steer_rad) / self.wheelbase_m
