"""Play a bag's camera topic over ROS 2 into a running lane detector and record its answers.

This is what a car sees: frames leave at the bag's own pace (or scaled), with sensor-data
QoS and their original header stamps (the bag's serialized bytes are published
unchanged), and the detector's ``/lanes`` answers are matched back by header stamp. The
clock for latency is this process's: publish -> LaneArray received.
"""
from __future__ import annotations

import faulthandler
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lanesad_ros.ros.bag.writer import restamp_cdr
from lanesad_ros.ros.convert import stamp_to_ns
from lanesad_ros.ros.entry import arm_teardown_watchdog

# Warm-up frames carry stamps in the last second a ROS header can hold, which no drive uses.
WARM_UP_STAMP_NS = (2**31 - 1) * 10**9
# Our node publishes /diagnostics every second: this long after a first answer without a
# backend_settled value, the detector is one that does not report it.
NO_SAY_S = 2.5

IMAGE_MSG_TYPES = {
    "sensor_msgs/msg/Image": ("sensor_msgs.msg", "Image"),
    "sensor_msgs/msg/CompressedImage": ("sensor_msgs.msg", "CompressedImage"),
}


class ReplayError(RuntimeError):
    """Live replay cannot run (no ROS, no detector answering); the message says what to do."""


@dataclass
class ReplayResult:
    """Publish times and answers, keyed by header stamp (ns). Times are time.perf_counter()."""

    published: dict[int, float] = field(default_factory=dict)
    received: dict[int, tuple[float, Any]] = field(default_factory=dict)  # stamp -> (time, LaneArray)
    unmatched: int = 0  # answers whose stamp was never published (another publisher, or stale)
    duplicate_stamps: int = 0
    duration_s: float = 0.0

    def latency_ms(self, stamp: int) -> float | None:
        if stamp in self.received and stamp in self.published:
            return (self.received[stamp][0] - self.published[stamp]) * 1000.0
        return None


def ros_environment() -> None:
    """Environment this process needs before rclpy starts (camera-sized frames over Fast DDS)."""
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")


def _import_types(image_type: str):
    try:
        import importlib

        module, name = IMAGE_MSG_TYPES[image_type]
        image_cls = getattr(importlib.import_module(module), name)
    except KeyError:
        raise ReplayError(f"cannot replay {image_type}: only {', '.join(IMAGE_MSG_TYPES)}") from None
    except ImportError as exc:
        raise ReplayError(f"rclpy / sensor_msgs not importable ({exc}); install the ROS wheels (make setup)") from None
    try:
        from lanesad_ros.msg import LaneArray
    except ImportError as exc:
        raise ReplayError(f"generated message types lanesad_ros.msg not importable ({exc}): build the messages "
                          "(make setup) and source tools/ros_env.sh, or source your ROS workspace") from None
    return image_cls, LaneArray


def _prefetch(items: Iterable, size: int = 16) -> Iterator:
    """Read ahead in a thread so disk reads do not disturb the publishing schedule."""
    q: queue.Queue = queue.Queue(maxsize=size)
    done = object()
    failure: list[BaseException] = []

    def work():
        try:
            for item in items:
                q.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            failure.append(exc)
        finally:
            q.put(done)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not done:
        yield item
    if failure:
        raise failure[0]


class Replayer:
    """A node that publishes bag images and subscribes to the detector's lanes.

    Use as a context manager (rclpy is initialised in its own context, so several runs in
    one process do not interfere), ``wait_for_detector()``, then ``play(messages)``.

    Fast DDS's close of our participant can wait for good, holding the GIL, on a TCP peer that has
    stopped reading (so a node we spawned is ended first: evaluate.run_live). With ``close_timeout``
    a close still running that many seconds later writes "Timeout" and every thread's Python stack to
    stderr and ends the process with status 1 (:func:`lanesad_ros.ros.entry.arm_teardown_watchdog`,
    faulthandler's own thread, which needs no GIL). Its timer is process-wide: for command-line
    runs, not inside a test runner that keeps its own.
    """

    def __init__(self, image_topic: str, image_type: str, lanes_topic: str = "/lanes",
                 node_name: str = "lanesad_eval_replay", close_timeout: float | None = None) -> None:
        ros_environment()
        self._image_cls, self._lane_array_cls = _import_types(image_type)
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data

        self.image_topic, self.lanes_topic, self.close_timeout = image_topic, lanes_topic, close_timeout
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)  # not sys.argv: our CLI options are no ROS arguments
        self.node = rclpy.create_node(node_name, context=self.context)
        self.publisher = self.node.create_publisher(self._image_cls, image_topic, qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.result = ReplayResult()
        self._subscription = None
        self._last_answer = 0.0
        self._warm_up_stamps: set[int] = set()
        self._warm_up_answers = 0
        self._settled: bool | None = None  # the detector's backend_settled diagnostics value, if it has one

    def _on_lanes(self, msg: Any) -> None:
        now = time.perf_counter()
        stamp = stamp_to_ns(msg.header.stamp)
        with self._lock:
            if stamp in self._warm_up_stamps:
                self._warm_up_answers += 1
                return
            self._last_answer = now
            if stamp in self.result.published and stamp not in self.result.received:
                self.result.received[stamp] = (now, msg)
            else:
                self.result.unmatched += 1

    def _subscribe(self) -> None:
        """Subscribe to the lanes with the reliability the detector offers (best effort fits both)."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        reliability = ReliabilityPolicy.BEST_EFFORT
        infos = self.node.get_publishers_info_by_topic(self.lanes_topic)
        if infos and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos):
            reliability = ReliabilityPolicy.RELIABLE
        qos = QoSProfile(depth=100, reliability=reliability)
        self._subscription = self.node.create_subscription(self._lane_array_cls, self.lanes_topic, self._on_lanes, qos)

    def wait_for_detector(self, timeout: float = 60.0, alive=lambda: True) -> None:
        """Wait until the detector subscribes to our images and publishes lanes.

        ``alive()`` is polled so a spawned node that dies ends the wait at once.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive():
                raise ReplayError("the lane detector process exited during start-up")
            if self.publisher.get_subscription_count() > 0 and self.node.count_publishers(self.lanes_topic) > 0:
                break
            self.executor.spin_once(timeout_sec=0.1)
        else:
            raise ReplayError(f"no lane detector answered within {timeout:.0f} s: nobody subscribes to "
                              f"{self.image_topic} and publishes {self.lanes_topic} (domain "
                              f"{os.environ.get('ROS_DOMAIN_ID', '0')})")
        self._subscribe()
        # Let the lanes subscription match before the first frame leaves.
        settle = time.monotonic() + 5.0
        while time.monotonic() < settle and self._subscription.get_publisher_count() == 0:
            self.executor.spin_once(timeout_sec=0.05)
        self.executor.spin_once(timeout_sec=0.5)

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            for kv in status.values:
                if kv.key == "backend_settled":
                    self._settled = kv.value == "true"

    def warm_up(self, data: bytes, timeout: float = 60.0, alive=lambda: True) -> int:
        """Publish ``data`` (one serialized image of the drive) restamped with stamps the drive never
        uses, every 0.2 s, until the detector reports a settled backend (its ``backend_settled``
        diagnostics value) and has answered once more after that, so the chosen backend has run; a
        detector whose diagnostics carry no such value ``NO_SAY_S`` after its first answer is taken
        as it is. A node may open its topics before its detector is loaded, and a first start-up
        answers on a stand-in backend while it measures the others: frames played
        then would be dropped or timed on the wrong backend. Returns the warm-up frames sent;
        their answers are not counted. Raises ReplayError when ``timeout`` s pass first.
        """
        from diagnostic_msgs.msg import DiagnosticArray

        diagnostics = self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        deadline, sent, next_send = time.monotonic() + timeout, 0, 0.0
        first_answer_at = answers_when_settled = None
        try:
            while True:
                now = time.monotonic()
                with self._lock:
                    answers = self._warm_up_answers
                if answers and first_answer_at is None:
                    first_answer_at = now
                if self._settled and answers_when_settled is None:
                    answers_when_settled = answers
                if answers_when_settled is not None and answers > answers_when_settled:
                    return sent  # answered on the settled backend
                if self._settled is None and first_answer_at is not None and now - first_answer_at > NO_SAY_S:
                    return sent  # a detector whose diagnostics never say: its answers are all we have
                if time.monotonic() > deadline:
                    raise ReplayError(f"the lane detector gave no settled answer to warm-up frames within "
                                      f"{timeout:.0f} s (answers {self._warm_up_answers}, backend settled: "
                                      f"{self._settled})")
                if not alive():
                    raise ReplayError("the lane detector process exited during warm-up")
                if time.monotonic() >= next_send:
                    stamp = WARM_UP_STAMP_NS + sent
                    with self._lock:
                        self._warm_up_stamps.add(stamp)
                    self.publisher.publish(restamp_cdr(data, stamp))
                    sent, next_send = sent + 1, time.monotonic() + 0.2
                self.executor.spin_once(timeout_sec=0.05)
        finally:
            self.node.destroy_subscription(diagnostics)

    def play(self, messages: Iterable[tuple[int, int, bytes]], rate: float = 1.0, settle_s: float = 3.0,
             progress=None, first_answer_s: float = 60.0) -> ReplayResult:
        """Publish (bag time ns, header stamp ns, serialized image) at ``rate`` x the bag's pace.

        Afterwards waits until every frame is answered or no answer came for ``settle_s``; while
        no frame has been answered at all (a node whose topics are open but whose detector is
        still loading answers its newest queued frame only when ready) it waits up to
        ``first_answer_s`` instead.
        """
        if rate <= 0:
            raise ReplayError(f"rate must be positive, got {rate}")
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        start = time.perf_counter()
        t0_bag = t0_wall = None
        for bag_ns, stamp, data in _prefetch(messages):
            if t0_bag is None:
                t0_bag, t0_wall = bag_ns, time.perf_counter()
            delay = t0_wall + (bag_ns - t0_bag) / 1e9 / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            with self._lock:
                if stamp in self.result.published:
                    self.result.duplicate_stamps += 1
                self.result.published[stamp] = time.perf_counter()
            self.publisher.publish(data)
            if progress is not None:
                progress.update(1)
        last_publish = time.perf_counter()
        while True:
            time.sleep(0.05)
            with self._lock:
                complete = len(self.result.received) >= len(self.result.published)
                idle_since = max(self._last_answer, last_publish)
                patience = settle_s if self.result.received else max(settle_s, first_answer_s)
            if complete or time.perf_counter() - idle_since > patience:
                break
        self.result.duration_s = time.perf_counter() - start
        return self.result

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutdown while spinning
                return

    def close(self) -> None:
        """Shut our participant down (within ``close_timeout`` when set: the class docstring)."""
        import rclpy

        watchdog = self.close_timeout is not None and arm_teardown_watchdog(self.close_timeout)
        try:
            try:
                rclpy.shutdown(context=self.context)
            except Exception:  # noqa: BLE001 - already shut down
                pass
            if self._thread is not None:
                self._thread.join(timeout=2.0)
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            if watchdog:
                faulthandler.cancel_dump_traceback_later()

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
