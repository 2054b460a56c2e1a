"""Console-script entry points of the node executables, and how their process ends on a signal.

Importing the node modules (rclpy, torch, the backends) takes seconds, so the entry points
install the SIGINT/SIGTERM handlers first and import the node module afterwards. From then on
Ctrl-C, ``ros2 launch``'s shutdown or ``kill`` end the process quietly with status 0, in three
phases (:func:`lanesad_ros.ros.node.run` moves through them; rclpy installs no handlers of its own):

- starting (imports, rclpy.init, building the node, seconds of weight loading): the first
  SIGINT/SIGTERM raises SystemExit(0), abandoning the step in progress -- except inside
  :func:`stop_deferred` (the detector's load: torch's import runs Python code inside C++ calls,
  where the SystemExit cannot pass and the process aborted, exit -6), which ends the process with
  the same SystemExit(0) as soon as the load returns (seconds at most; meanwhile the stopping
  dispositions below already hold: a second SIGTERM ends the process at once);
- running (spinning): the first signal only requests the stop; the spin loop ends after the
  callback in progress (no exception is thrown into rclpy, a callback or a ``__del__``);
- stopping (from the first signal on, through the node's teardown and the interpreter's exit):
  SIGINT is ignored -- Ctrl-C pressed twice, or the terminal's Ctrl-C plus launch's own SIGINT,
  must not kill the node mid-shutdown -- and SIGTERM takes its default action, so launch's
  escalation (SIGTERM after ``sigterm_timeout``, then SIGKILL) still ends a teardown that hangs.
  Without launch (``ros2 run`` and Ctrl-C) a watchdog ends it: a node's teardown (closing it,
  rclpy shutdown, the interpreter's exit) still running ``TEARDOWN_TIMEOUT_S`` after it began
  writes every thread's stack to stderr (:func:`faulthandler.dump_traceback_later`) and exits
  with status 1. It is armed when the teardown begins, not at the signal: a callback in progress
  (a lifecycle ``configure`` loading weights) or an interrupted start-up may take longer.

The stopping dispositions are the operating system's own (SIG_IGN / SIG_DFL), so they hold while
the main thread is blocked in C code and through interpreter finalization, where CPython resets
Python-level handlers to the default action (a late second Ctrl-C then killed the process: -2).
Only a signal while the interpreter itself starts (site, the ROS wheels' bootstrap re-exec:
0.1-0.3 s on this machine), before any code of this package runs, is reported by Python itself.

    python -m lanesad_ros.ros.entry lane_detector [--ros-args ...]
    python -m lanesad_ros.ros.entry lane_detector_lifecycle [--ros-args ...]
"""
from __future__ import annotations

import difflib
import faulthandler
import importlib
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

TEARDOWN_TIMEOUT_S = 10.0  # launch's own escalation (SIGTERM) comes after its sigterm_timeout, 5 s by default
# rcl's --ros-args flags (rcl/arguments.h), for a suggestion when one is mistyped
ROS_ARG_FLAGS = ("--params-file", "--param", "--remap", "--log-level", "--log-config-file", "--enclave",
                 "--enable-external-lib-logs", "--disable-external-lib-logs", "--enable-stdout-logs",
                 "--disable-stdout-logs", "--enable-rosout-logs", "--disable-rosout-logs")
EXECUTABLES = {"lane_detector": "lanesad_ros.ros.node", "lane_detector_lifecycle": "lanesad_ros.ros.lifecycle"}


class _Phase:
    running = False  # the node spins: a signal only requests the stop
    stopping = False  # a stop was requested or the teardown began
    deferred = 0  # inside stop_deferred (nesting depth): a starting-phase signal only requests the stop


def _on_signal(signum: int, frame: Any) -> None:
    begin_stopping()
    if not _Phase.running and not _Phase.deferred:
        raise SystemExit(0)


@contextmanager
def stop_deferred() -> Iterator[None]:
    """A block that a starting-phase signal must not interrupt: the signal only requests the stop,
    and SystemExit(0) is raised when the block ends normally (an exception leaving the block goes on
    as it is; :func:`stop_requested` tells the caller it came with a stop); entered after a stop was
    requested, the block does not run (SystemExit(0) at once). Nested, only the outermost block ends
    the process; in the running phase nothing is raised (a signal only requests the stop). For code that runs Python
    inside C/C++ calls (torch's import): an exception raised there by a signal handler cannot cross
    the C++ frames ("terminate called after throwing an instance of 'pybind11::error_already_set'",
    exit -6). Holding the signal itself (``pthread_sigmask``) does not do it: by then DDS threads exist
    to take a process-directed signal, and Python runs the handler in the main thread regardless."""
    if _Phase.stopping and not _Phase.running:  # stopped already: do not start the block
        raise SystemExit(0)
    _Phase.deferred += 1
    try:
        yield
    finally:
        _Phase.deferred -= 1
    if _Phase.stopping and not _Phase.running and not _Phase.deferred:
        raise SystemExit(0)


def install_quiet_signal_handlers() -> None:
    """SIGINT/SIGTERM end the process quietly with status 0 (see the module docstring); once the
    stop has begun this leaves the stopping dispositions in place."""
    if _Phase.stopping:
        return
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def mark_running() -> None:
    """The node spins from here on: a signal requests the stop (:func:`stop_requested`) instead of raising."""
    _Phase.running = True


def stop_requested() -> bool:
    """True once a SIGINT/SIGTERM arrived (or the teardown began)."""
    return _Phase.stopping


def begin_stopping() -> None:
    """Enter the stopping phase: SIGINT ignored, SIGTERM's default action (ends the process at once).
    Called by the first signal and by the node's teardown; main thread only (Python's signal rule)."""
    _Phase.stopping = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def arm_teardown_watchdog(seconds: float | None = None) -> bool:
    """Called as a teardown begins (a built node's; a live replay's DDS close): one still running
    ``seconds`` later (default ``TEARDOWN_TIMEOUT_S``, read at the call) writes every thread's Python
    stack to stderr and exits with status 1 (module docstring; faulthandler's own thread, so also while
    C code holds the GIL). Without a stderr file to write to (``sys.stderr`` None or not backed by a
    file) there is no watchdog: returns False."""
    try:
        faulthandler.dump_traceback_later(TEARDOWN_TIMEOUT_S if seconds is None else seconds, exit=True)
    except (RuntimeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False
    return True


def ros_init_problem(exc: BaseException) -> tuple[str, int]:
    """One line and an exit status for an ``rclpy.init`` that failed (rcl's ``RCLError``): no usable
    ROS log folder (1: unwritable, or HOME unset so ~/.ros/log cannot be named), ``--ros-args`` rcl
    cannot parse or does not know (2: a params file that does not exist or is no YAML, ``-p``
    without ``:=``, a trailing ``-r``, ``--param-file``), anything else (1). rcl's source locations
    (", at .../arguments.c:415") are dropped."""
    text = re.sub(r", at \S+:\d+", "", str(exc)).removeprefix("failed to initialize rcl: ")
    if type(exc).__name__ == "UnknownROSArgsError":  # its text is the list of what rcl did not know
        unknown = re.findall(r"'([^']*)'", text)
        close = difflib.get_close_matches(unknown[0], ROS_ARG_FLAGS, n=1) if unknown else []
        return (f"unknown --ros-args: {' '.join(unknown) or text}"
                + (f" (did you mean {close[0]}?)" if close else "")), 2
    if "failed to initialize logging" in text:
        return (f"ROS cannot set up its log folder ({text}): set ROS_LOG_DIR to a writable folder "
                f"(or add --ros-args --disable-external-lib-logs)"), 1
    if text.startswith("Couldn't parse"):
        return f"bad --ros-args: {text}", 2
    return f"ROS could not initialise: {text}", 1


def _run(executable: str, argv: list[str] | None) -> int:
    install_quiet_signal_handlers()
    # Imported here, after the handlers, on purpose: see the module docstring.
    module = importlib.import_module(EXECUTABLES[executable])
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
