"""The lane detector as a managed (lifecycle) node: ``lane_detector_lifecycle``.

The same node as :mod:`lanesad_ros.ros.node` (same parameters, topics, QoS, diagnostics,
threading), driven by the ROS 2 node lifecycle (design.ros2.org/articles/node_lifecycle.html)
through the standard services ``<node>/change_state``, ``<node>/get_state``, ... :

- unconfigured: parameters declared, nothing loaded.
- ``configure``: loads the weights and the backend and builds the camera model; a failure
  (missing weights, bad intrinsics) returns FAILURE with the reason logged, back to unconfigured.
- ``activate``: creates the publishers, subscribes to the image (and CameraInfo) topic,
  starts the workers and the 1 Hz /diagnostics.
- ``deactivate``: unsubscribes, finishes the running frame, removes the publishers; the
  Detector stays loaded, so a later ``activate`` is immediate.
- ``cleanup``: releases the Detector (weights, backend sessions); ``shutdown`` from any state.

Start-up parameters (``weights``, ``device``, ``backend``, the topics, the camera model) can
be set while unconfigured and take effect at the next configure / activate; while configured
a change is refused with a reason that says so (cleanup, set, configure).

The plain ``lane_detector`` stays the default executable (configured and active at start-up).
"""
from __future__ import annotations

import sys
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from lanesad_ros.ros.node import NODE_NAME, LaneDetectorCore, run


class LaneDetectorLifecycleNode(LaneDetectorCore, LifecycleNode):
    """Managed lane detector; see the module docstring for what each transition does."""

    STARTUP_CHANGE = ("deactivate and clean up the node (ros2 lifecycle set <node> cleanup), set it, then "
                      "configure: the new value is read then")

    def __init__(self, **node_kwargs: Any) -> None:
        LifecycleNode.__init__(self, NODE_NAME, **node_kwargs)
        self._declare()
        self.get_logger().info(f"unconfigured, nothing loaded: ros2 lifecycle set {self.get_fully_qualified_name()} "
                               "configure, then activate")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except (ValueError, OSError) as exc:  # weights, backend, camera model: the message names the culprit
            self.get_logger().error(f"configure failed: {exc}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: {self.detector.model_name} on {self.detector.backend_name}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.get_logger().info("deactivated: no subscriptions, model kept loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._pubs:
            self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop the workers (if active) and destroy the node."""
        if self._pubs:
            self._deactivate()
        self._cleanup()
        self.destroy_node()


def main(argv: list[str] | None = None) -> int:
    """Console script ``lane_detector_lifecycle``: starts unconfigured; drive it with the lifecycle services."""
    return run(LaneDetectorLifecycleNode, argv)


if __name__ == "__main__":
    sys.exit(main())
