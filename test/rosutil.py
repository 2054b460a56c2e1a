"""Helpers for tests that talk ROS 2 across processes."""
from __future__ import annotations

import os
import random
import time

import pytest


def require_ros_messages() -> None:
    """Skip unless rclpy and the generated lanesad_ros messages import."""
    pytest.importorskip("rclpy")
    try:
        import lanesad_ros.msg  # noqa: F401
    except ImportError as exc:  # not built: `make setup` builds them
        pytest.skip(f"lanesad_ros messages not built ({exc})")


def random_domain_id() -> int:
    """A DDS domain of its own, so tests running nodes at the same time never cross-talk. 1-101:
    higher domains put Fast DDS's ports in Linux's ephemeral range (32768-60999), which the ROS 2
    docs ("About Domain ID") warn against; a test on domain 176 found no detector within 90 s."""
    return random.randint(1, 101)


def ros_env(domain_id: int | None = None) -> dict[str, str]:
    """Environment for a child ROS process: own DDS domain, large-data transports."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else random_domain_id())
    env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONFAULTHANDLER"] = "1"  # a hung node's stacks reach its log (NodeProcess.stop sends SIGABRT)
    return env


def spin_until(executor, predicate, timeout: float) -> bool:
    """Spin an rclpy executor until predicate() is true or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()
