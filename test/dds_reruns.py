"""Pytest plugin: a test that failed with a symptom of a Fast DDS stall runs once more.

On a busy 2-core CI machine one DDS participant now and then stalls: in full test runs (2026-12-04)
a node's services were not discovered within 90 s (a running node's new endpoints and services get the
same rerun), an idle unconfigured node did not exit 20 s after
SIGINT, a live replay found no detector subscribing, a subscriber got nothing in 20 s from a process
publishing every 0.1 s; the same tests passed alone, and 40 times in a
row under a full CPU load. ROS 2's own CI retries such tests (``colcon test --retest-until-pass``);
here only these symptoms are retried, once (pytest-rerunfailures, ``only_rerun``): any other failure,
or the same symptom twice, fails the run, and ``-ra`` lists every rerun.
"""
from __future__ import annotations

import pytest

DDS_STALLS = [
    r"node not discovered in \d+ attempts",  # node_harness.NodeProcess.wait_discovered
    r"not discovered within \d+ s",  # a running node's new endpoint or service (test_ros_node, test_road_node)
    r"node did not exit \S+ s after signal",  # node_harness.NodeProcess.stop
    r"node teardown hung",  # the same, ended by the node's own teardown watchdog
    r"no lane detector answered within",  # lanesad_ros.ros.replay, live evaluation
    r"no message arrived from the publisher process within",  # test_ros_messages, publisher not discovered
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test gets the policy unless it sets its own ``flaky`` marker."""
    for item in items:
        if item.get_closest_marker("flaky") is None:
            item.add_marker(pytest.mark.flaky(reruns=1, only_rerun=DDS_STALLS))
