#!/usr/bin/env python3
"""lane_keeper: an example lane-keeping node that steers by the lane_detector's lanes.

    python examples/lane_keeping/lane_keeping_node.py --ros-args -p speed:=20.0 [-r lanes:=/perception/lanes]

Steers by the ego lane's centre line, by pure pursuit (``lane_keeping_controller.py``). The
centre line comes from ``lanes/model`` (lanesad_ros/LaneModel: the detector's Kalman-filtered
``ego_lane``) while the detector publishes it, else from ``lanes`` (lanesad_ros/LaneArray:
the LEFT and RIGHT boundaries' ``ground_points``, fitted frame by frame). Either way the
detector needs a camera model with ``camera_x`` = the camera's distance ahead of the rear
axle (``base_link``, where pure pursuit steers from). ``source`` forces one of the two.

Publishes ``cmd_vel`` (geometry_msgs/TwistStamped, the usual command of a ROS car base and of
Nav2 controllers; ackermann_msgs has no pip wheel):
``linear.x`` = ``speed``, ``angular.z`` = speed * tan(steering angle) / wheelbase, header
stamp copied from the lanes (so the command can be matched to its camera frame), frame
``base_frame``. For a steering actuator: steering angle = atan(wheelbase * angular.z / linear.x).

With no ego boundary for longer than ``hold_time`` (seconds of message stamps, so bag or
simulated time works too) it commands straight ahead and says so (throttled).
"""
from __future__ import annotations

import math

import numpy as np
import rclpy
from geometry_msgs.msg import TwistStamped
from lane_keeping_controller import CentreEstimator, CentreLine, PurePursuit
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from lanesad_ros.msg import LaneArray, LaneModel

# name: (default, description, (min, max))
PARAMETERS = {
    "speed": (20.0, "Commanded speed, m/s (also sets the lookahead).", (0.0, 70.0)),
    "wheelbase": (2.8, "Distance from the rear to the front axle, m.", (0.5, 10.0)),
    "lookahead_time": (1.0, "Pure-pursuit lookahead, seconds of travel at the speed.", (0.0, 10.0)),
    "min_lookahead": (8.0, "Shortest lookahead, m.", (1.0, 100.0)),
    "max_steer": (0.5, "Front wheel angle limit, rad.", (0.01, 1.5)),
    "lane_width": (3.6, "Lane width assumed until both ego boundaries are seen, m.", (2.0, 6.0)),
    "fit_range": (40.0, "Ground points up to this far ahead are fitted, m.", (5.0, 200.0)),
    "hold_time": (0.5, "Keep steering by the last centre line this long without lanes, s.", (0.0, 10.0)),
}


class LaneKeeper(Node):
    def __init__(self) -> None:
        super().__init__("lane_keeper")
        for name, (default, text, (low, high)) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(
                description=text, read_only=True,
                floating_point_range=[FloatingPointRange(from_value=low, to_value=high, step=0.0)]))
        self.declare_parameter("base_frame", "base_link", ParameterDescriptor(
            description="Frame of the command and of the ground points expected.", read_only=True))
        self.declare_parameter("source", "auto", ParameterDescriptor(
            description="Centre line from: auto (lanes/model while it is published, else lanes), model, lanes.",
            read_only=True, additional_constraints="one of: auto, model, lanes"))
        p = {name: self.get_parameter(name).value for name in (*PARAMETERS, "base_frame", "source")}
        if p["source"] not in ("auto", "model", "lanes"):
            raise ValueError(f"source must be auto, model or lanes, got {p['source']!r}")
        self.source = p["source"]
        self.last_model_s = -math.inf  # stamp of the newest LaneModel received
        self.speed, self.base_frame, self.hold_time = p["speed"], p["base_frame"], p["hold_time"]
        self.estimator = CentreEstimator(default_width_m=p["lane_width"], fit_x_max=p["fit_range"])
        self.pursuit = PurePursuit(wheelbase_m=p["wheelbase"], lookahead_time_s=p["lookahead_time"],
                                   min_lookahead_m=p["min_lookahead"], max_steer_rad=p["max_steer"])
        self.last_centre: CentreLine | None = None
        self.last_centre_s = -math.inf
        self.lost_frames = 0
        self.publisher = self.create_publisher(TwistStamped, "cmd_vel", 10)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        if self.source != "model":
            self.create_subscription(LaneArray, "lanes", self.on_lanes, reliable)
        if self.source != "lanes":
            self.create_subscription(LaneModel, "lanes/model", self.on_model, reliable)
        self.get_logger().info(f"lane keeping at {self.speed:.1f} m/s, lookahead "
                               f"{self.pursuit.lookahead_m(self.speed):.1f} m, centre line from {self.source}")

    def on_model(self, msg: LaneModel) -> None:
        stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.last_model_s = stamp_s
        ego = msg.ego_lane
        centre = None
        if ego.valid:
            centre = CentreLine.from_ego_lane(ego.lateral_offset, ego.heading_error, ego.curvature, ego.lane_width,
                                              ego.curvature_rate)
        elif not msg.ground_frame_id:
            self.get_logger().warn("lane model without a ground frame: the lane_detector has no camera model "
                                   "for these images (none, no CameraInfo yet, or errors.camera_size)",
                                   throttle_duration_sec=5.0)
        self.steer_by(centre, stamp_s, msg.header)

    def on_lanes(self, msg: LaneArray) -> None:
        stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if self.source == "auto" and abs(stamp_s - self.last_model_s) <= self.hold_time:
            return  # the detector publishes its filtered lane model: that one steers
        if not msg.ground_frame_id and msg.lanes:
            self.get_logger().warn("lanes carry no ground points: the lane_detector has no camera model for "
                                   "these images (none, no CameraInfo yet, or errors.camera_size)",
                                   throttle_duration_sec=5.0)
        elif msg.ground_frame_id and msg.ground_frame_id != self.base_frame:
            self.get_logger().warn(f"ground points are in {msg.ground_frame_id}, expected {self.base_frame}",
                                   throttle_duration_sec=5.0)
        boundaries = {lane.slot: np.array([(p.x, p.y) for p in lane.ground_points]).reshape(-1, 2)
                      for lane in msg.lanes if len(lane.ground_points)}
        self.steer_by(self.estimator.update(boundaries), stamp_s, msg.header)

    def steer_by(self, centre: CentreLine | None, stamp_s: float, header) -> None:
        """Publish the command for the frame stamped ``stamp_s``: by ``centre``, else by the last
        centre line up to ``hold_time`` old, else straight ahead."""
        if centre is not None:
            self.last_centre, self.last_centre_s = centre, stamp_s
        elif 0.0 <= stamp_s - self.last_centre_s <= self.hold_time:  # not one stamped ahead (a warm-up frame)
            centre = self.last_centre
        steer = 0.0
        if centre is not None:
            steer = self.pursuit.steer(centre, self.speed)
        else:
            self.lost_frames += 1
            self.get_logger().warn(f"no ego lane for {stamp_s - self.last_centre_s:.1f} s: steering straight "
                                   f"({self.lost_frames} frames so far)", throttle_duration_sec=2.0)
        cmd = TwistStamped()
        cmd.header.stamp = header.stamp
        cmd.header.frame_id = self.base_frame
        cmd.twist.linear.x = float(self.speed)
        cmd.twist.angular.z = float(self.speed * math.tan(steer) / self.pursuit.wheelbase_m)
        self.publisher.publish(cmd)


def main(args=None) -> None:
    try:
        with rclpy.init(args=args):
            rclpy.spin(LaneKeeper())
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
