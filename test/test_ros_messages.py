"""The lane messages: both halves of `lanesad_ros` import together, and a LaneArray
published by one process arrives intact in another over DDS."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rosutil import require_ros_messages, ros_env, spin_until

PUBLISHER = textwrap.dedent(
    """
    import rclpy
    from geometry_msgs.msg import Point, Point32
    from lanesad_ros.msg import Lane, LaneArray

    rclpy.init()
    node = rclpy.create_node("lane_array_publisher")
    pub = node.create_publisher(LaneArray, "/lanes", 10)
    msg = LaneArray()
    msg.header.frame_id = "camera_optical"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1700000000, 123456789
    msg.image_width, msg.image_height = 1280, 720
    msg.ground_frame_id = "base_link"
    msg.model_name, msg.weights_name = "enet_sad", "enet_sad_default.safetensors"
    msg.inference_latency_ms = 12.5
    for slot, x0 in ((Lane.LEFT, 500.0), (Lane.RIGHT, 780.0)):
        lane = Lane(slot=slot, confidence=0.75)
        lane.image_points = [Point32(x=x0 + i, y=710.0 - 10 * i, z=0.0) for i in range(40)]
        lane.ground_points = [Point(x=5.0 + i, y=1.8 if slot == Lane.LEFT else -1.8, z=0.0) for i in range(20)]
        msg.lanes.append(lane)
    while True:  # until the test kills it: discovery can take long on a busy machine
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.1)
    """
)


def test_core_and_generated_messages_import_in_one_interpreter():
    require_ros_messages()
    import lanesad_ros
    from lanesad_ros.lanes import LaneSlot
    from lanesad_ros.msg import Lane

    assert len(lanesad_ros.__path__) >= 2, "extend_path should merge the generated module's folder"
    # The slot constants of the message and of the core agree.
    for slot in (LaneSlot.LEFT_LEFT, LaneSlot.LEFT, LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT, LaneSlot.UNKNOWN):
        assert getattr(Lane, slot.name) == int(slot)


def test_lane_array_crosses_processes_intact():
    require_ros_messages()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from lanesad_ros.msg import Lane, LaneArray

    env = ros_env()
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    try:
        node = rclpy.create_node("lane_array_listener", context=context)
        received: list[LaneArray] = []
        node.create_subscription(LaneArray, "/lanes", received.append, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        assert spin_until(executor, lambda: bool(received), timeout=60), \
            "no message arrived from the publisher process within 60 s"
    finally:
        publisher.kill()  # before our participant closes (lanesad_ros.ros.evaluate.run_live)
        output = publisher.communicate()[0].decode(errors="replace")
        rclpy.shutdown(context=context)

    msg = received[0]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1700000000, 123456789), output
    assert msg.header.frame_id == "camera_optical"
    assert (msg.image_width, msg.image_height) == (1280, 720)
    assert (msg.ground_frame_id, msg.model_name) == ("base_link", "enet_sad")
    assert msg.inference_latency_ms == pytest.approx(12.5)
    assert [lane.slot for lane in msg.lanes] == [Lane.LEFT, Lane.RIGHT]
    left = msg.lanes[0]
    assert left.confidence == pytest.approx(0.75)
    assert len(left.image_points) == 40 and len(left.ground_points) == 20
    assert (left.image_points[3].x, left.image_points[3].y) == (503.0, 680.0)
    assert left.ground_points[19].x == pytest.approx(24.0) and left.ground_points[0].y == pytest.approx(1.8)
