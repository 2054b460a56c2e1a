"""Two-process probe for large frames over DDS: ``python frame_probe.py pub|sub N``.

pub: waits for a subscriber, then publishes N 1640x590 bgr8 images (2.9 MB, a CULane frame)
at 10 Hz with sensor-data QoS. sub: prints ``received <count>`` after ``N / 10 + 8`` seconds.
Used by test_ros_node_startup.py to check transport settings docs/node.md recommends.
"""
from __future__ import annotations

import sys
import time

import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

TOPIC = "/frame_probe/image"


def main(role: str, count: int) -> None:
    rclpy.init()
    node = rclpy.create_node(f"frame_probe_{role}")
    if role == "pub":
        publisher = node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
        deadline = time.monotonic() + 30
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        msg = Image(height=590, width=1640, encoding="bgr8", step=1640 * 3, data=bytes(590 * 1640 * 3))
        time.sleep(1.0)  # the subscriber's side of the match settles
        for i in range(count):
            msg.header.frame_id = str(i)
            publisher.publish(msg)
            time.sleep(0.1)
        time.sleep(1.0)
    else:
        received: list[str] = []
        node.create_subscription(Image, TOPIC, lambda m: received.append(m.header.frame_id), qos_profile_sensor_data)
        end = time.monotonic() + count / 10 + 8
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        print(f"received {len(received)}", flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
