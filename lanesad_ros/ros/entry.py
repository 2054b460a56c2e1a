"""Console-script entry points of the node executables, light on purpose.

Importing the node modules (rclpy, torch, the backends) takes seconds. These entry points
install SIGINT/SIGTERM handlers first and import the node module afterwards, so Ctrl-C or a
launch shutdown at any moment of start-up ends the process quietly with status 0 (after
rclpy.init, :func:`lanesad_ros.ros.node.run` takes over the same promise). Only a signal
while the interpreter itself starts (site, the ROS wheels' bootstrap re-exec: 0.1-0.3 s on
this machine), before any code of this package runs, is reported by Python itself.

    python -m lanesad_ros.ros.entry lane_detector [--ros-args ...]
    python -m lanesad_ros.ros.entry lane_detector_lifecycle [--ros-args ...]
"""
from __future__ import annotations

import importlib
import signal
import sys
from typing import Any

EXECUTABLES = {"lane_detector": "lanesad_ros.ros.node", "lane_detector_lifecycle": "lanesad_ros.ros.lifecycle"}


def _quiet_exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def install_quiet_signal_handlers() -> None:
    """SIGINT/SIGTERM end the process quietly with status 0 (until rclpy.init installs its own handlers)."""
    signal.signal(signal.SIGINT, _quiet_exit)
    signal.signal(signal.SIGTERM, _quiet_exit)


def _run(executable: str, argv: list[str] | None) -> int:
    install_quiet_signal_handlers()
    try:
        # Imported here, after the handlers, on purpose: see the module docstring.
        module = importlib.import_module(EXECUTABLES[executable])
    except KeyboardInterrupt:
        return 0
    return module.main(argv)


def lane_detector(argv: list[str] | None = None) -> int:
    """Console script ``lane_detector`` (plain node)."""
    return _run("lane_detector", argv)


def lane_detector_lifecycle(argv: list[str] | None = None) -> int:
    """Console script ``lane_detector_lifecycle`` (managed node)."""
    return _run("lane_detector_lifecycle", argv)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in EXECUTABLES:
        print(f"usage: python -m lanesad_ros.ros.entry {{{','.join(EXECUTABLES)}}} [--ros-args ...]", file=sys.stderr)
        sys.exit(2)
    sys.exit(_run(sys.argv[1], [sys.argv[0], *sys.argv[2:]]))
