"""The node's planner outputs over DDS: lanes/model beside /lanes (same header), and odometry on
odom_topic that cannot be used (none yet, stale, NaN): a clear throttled log, a count in
/diagnostics, the frame's ego lane goes without motion and the node keeps answering."""
from __future__ import annotations

import math
import signal
import time

import pytest

from rosutil import require_ros_messages, ros_env

require_ros_messages()

from builtin_interfaces.msg import Time  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402

from lanesad_ros.msg import LaneModel  # noqa: E402
from node_harness import (  # noqa: E402
    LOW_THRESHOLDS,
    STARTUP_TIMEOUT,
    NodeProcess,
    RosClient,
    image_message,
    stamp_key,
    synthetic_frames,
)

ODOM_TOPIC = "/test_odom"


@pytest.fixture(scope="module")
def node(domain_id, random_weights, tmp_path_factory):
    proc = NodeProcess(ros_env(domain_id), tmp_path_factory.mktemp("node") / "lane_detector.log",
                       f"weights:={random_weights}", "device:=cpu", "backend:=torch",
                       "image_topic:=/test_camera/image_raw", f"odom_topic:={ODOM_TOPIC}", "odom_max_age:=0.5",
                       "fx:=1000.0", "cx:=640.0", "cy:=360.0", "pitch:=0.05", "camera_height:=1.5", *LOW_THRESHOLDS)
    yield proc
    proc.stop(signal.SIGKILL if proc.alive() else signal.SIGINT)


@pytest.fixture(scope="module")
def client(node, domain_id):
    ros = RosClient(domain_id, "/test_camera/image_raw")
    try:
        ros.wait_ready(node)
        node.wait_for_log("start-up: ready", timeout=STARTUP_TIMEOUT * 3)  # the first frame's answer waits on it
        yield ros
    finally:
        try:
            node.stop(signal.SIGKILL if node.alive() else None)  # before our participant closes
        finally:
            ros.close()


def odometry(stamp: Time, speed: float, yaw_rate: float = 0.0) -> Odometry:
    msg = Odometry()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, "odom", "base_link"
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = speed, yaw_rate
    return msg


def test_lane_model_goes_out_with_the_image_header_and_bad_odometry_is_reported(node, client):
    models = client.listen("/lanes/model", LaneModel, QoSProfile(depth=100))
    publisher = client.node.create_publisher(Odometry, ODOM_TOPIC, 10)
    assert client.wait_for(lambda: publisher.get_subscription_count() > 0, 20), \
        "the node's odom_topic subscription not discovered within 20 s"
    frame = image_message(synthetic_frames(1)[0])
    started = time.monotonic()

    def answer_with_model():
        answer = client.request(frame)
        key = stamp_key(answer.header.stamp)
        assert client.wait_for(lambda: [m for m in models if stamp_key(m.header.stamp) == key], 10), "no LaneModel"
        model = [m for m in models if stamp_key(m.header.stamp) == key][0]
        assert model.header.frame_id == answer.header.frame_id
        assert model.ground_frame_id == "base_link"  # a camera model: also when nothing is seen
        return model

    answer_with_model()  # no odometry yet
    now = client.stamp()
    publisher.publish(odometry(Time(sec=now.sec - 5, nanosec=now.nanosec), 20.0))  # 5 s old
    time.sleep(0.5)
    answer_with_model()
    publisher.publish(odometry(client.stamp(), math.nan))
    time.sleep(0.5)
    answer_with_model()
    publisher.publish(odometry(client.stamp(), 20.0, 0.01))  # good again: used, nothing to report
    time.sleep(0.2)
    answer_with_model()

    kinds = ("none", "stale", "not_finite")
    values = client.diagnostics_after(started, lambda v: all(int(v.get(f"errors.odometry_{k}", 0)) >= 1
                                                             for k in kinds))
    assert values["odom_topic"] == ODOM_TOPIC
    assert node.alive()
    log = node.log()
    assert "ego lane without vehicle motion: no odometry received yet on /test_odom" in log
    assert "odometry is stale" in log and "limit 0.500 s" in log
    assert "odometry is not finite: speed nan m/s" in log
    assert "Traceback" not in log
