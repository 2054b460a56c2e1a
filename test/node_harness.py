"""The test side of the lane_detector node over DDS: the node as a child process, a client
that publishes frames and collects every output, and frame/message helpers.

Used by test_ros_node*.py. Each node runs in a DDS domain of its own (``domain_id`` fixture).
"""
from __future__ import annotations

import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from conftest import REPO_ROOT, SHARED_DATA
from lanesad_ros.msg import LaneArray
from lanesad_ros.ros.convert import bgr_to_image_msg

PARAMS_FILE = REPO_ROOT / "config" / "lane_detector.yaml"
DIAG_NAME = "lane_detector: lane detection"
STARTUP_TIMEOUT = 90.0  # torch import + model load on a busy 2-core CI machine
# An untrained network reports lanes only with near-zero thresholds; with them every frame
# has lanes, so ground points, markers and overlays carry real content.
LOW_THRESHOLDS = ("exist_threshold:=0.05", "prob_threshold:=0.05")


def level_value(level) -> int:
    """DiagnosticStatus levels are bytes in rclpy."""
    return level[0] if isinstance(level, bytes) else int(level)


def stamp_key(stamp) -> tuple[int, int]:
    return stamp.sec, stamp.nanosec


def real_frame_paths() -> list[Path]:
    """Real road frames from ../shared/data (TuSimple clips + Udacity test images); [] when absent."""
    tusimple = sorted((SHARED_DATA / "tusimple" / "clips").glob("*/*/*.jpg"))
    udacity = sorted((SHARED_DATA / "udacity" / "test_images").glob("*.jpg"))
    return tusimple + udacity


def synthetic_frames(n: int, width: int = 1280, height: int = 720) -> list[np.ndarray]:
    from lanesad_ros.data.synthetic import SceneGenerator

    generator = SceneGenerator(seed=11, width=width, height=height)
    return [generator.frame(i).image for i in range(n)]


def _no_core_files() -> None:
    """In the child before exec: the SIGABRT of a hung node's stop() leaves no core file in the repo."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class NodeProcess:
    """The lane_detector node as a child process, its output captured in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, *overrides: str, executable: str = "lane_detector",
                 params_file: Path | None = PARAMS_FILE, ros_args: tuple[str, ...] = ()):
        """``executable`` as the console scripts start it (lanesad_ros.ros.entry); ``ros_args`` go
        after the params file (remaps, ``-r __ns:=/car1``), ``overrides`` become ``-p name:=value``."""
        cmd = [sys.executable, "-m", "lanesad_ros.ros.entry", executable, "--ros-args",
               *(("--params-file", str(params_file)) if params_file else ()), *ros_args]
        for override in overrides:
            cmd += ["-p", override]
        self._cmd, self._env, self.restarts, self._first_log = cmd, env, 0, log_path
        self._start(log_path)

    def _start(self, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(self._cmd, env=self._env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=REPO_ROOT, preexec_fn=_no_core_files)

    def wait_discovered(self, ready, timeout: float = STARTUP_TIMEOUT, restarts: int = 1) -> None:
        """Wait until ``ready()`` (the test's client sees the node's services or topics); fail if the node
        exits or no attempt is seen within ``timeout`` in all. A node not seen within its share of the time
        is killed and started again (its log kept beside, ``.attemptN``): on this 2-core machine a running
        lifecycle node's services were twice not discovered within 90 s in full test runs (2026-12-04), a
        Fast DDS discovery stall of one participant; the same tests passed alone in 7-12 s."""
        share = timeout / (restarts + 1)
        for attempt in range(restarts + 1):
            deadline = time.monotonic() + share
            while not ready():
                assert self.alive(), f"node exited ({self.proc.returncode}):\n{self.log()[-3000:]}"
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            else:
                return
            if attempt == restarts:
                raise AssertionError(f"node not discovered in {restarts + 1} attempts of {share:.0f} s "
                                     f"(alive, log below):\n{self.log()[-3000:]}")
            self.proc.kill()
            self.proc.wait()
            self._log.close()
            self.restarts += 1
            first = self._first_log
            self._start(first.with_name(f"{first.stem}.attempt{self.restarts}{first.suffix}"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def wait_for_log(self, text: str, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until the node's log contains ``text``; fail if it exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.alive() and time.monotonic() < deadline, f"no {text!r} in the log:\n{self.log()[-3000:]}"
            time.sleep(0.1)

    def stop(self, sig: int | None = signal.SIGINT, timeout: float = 20.0) -> int:
        """Signal the node (None: it was signalled already) and wait for it to exit; kill it (and fail)
        if it hangs."""
        if sig is not None and self.alive():
            self.proc.send_signal(sig)
        try:
            code = self.wait(timeout)
            if code == 1 and "Timeout (0:00:" in self.log():  # lanesad_ros.ros.entry's teardown watchdog
                raise AssertionError(f"node teardown hung: its watchdog ended it (stacks):\n{self.log()[-6000:]}")
            return code
        except subprocess.TimeoutExpired as exc:
            self.proc.send_signal(signal.SIGABRT)  # faulthandler (ros_env) writes every thread's stack to the log
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            raise AssertionError(f"node did not exit {timeout} s after signal {sig}:\n{self.log()[-6000:]}") from exc


class RosClient:
    """This test's side of the wire: publishes frames, collects what the node publishes.

    Its own rclpy context (own domain id) spins on a background thread; callbacks store
    messages and wake up waiters.
    """

    def __init__(self, domain_id: int, image_topic: str, compressed: bool = False, namespace: str = ""):
        self.namespace = namespace
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("lane_detector_test_client", context=self.context)
        self.cond = threading.Condition()
        self.lanes: list[tuple[float, LaneArray]] = []
        self.diagnostics: list[tuple[float, dict[str, str], int]] = []
        self.debug_images: list[Image] = []
        self.points: list[PointCloud2] = []
        self.markers: list[MarkerArray] = []
        self._param_clients: dict[str, AsyncParameterClient] = {}
        reliable = QoSProfile(depth=1000)
        self.node.create_subscription(LaneArray, f"{namespace}/lanes", self._store(self.lanes, timed=True), reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.node.create_subscription(PointCloud2, f"{namespace}/lanes/points", self._store(self.points), reliable)
        self.node.create_subscription(MarkerArray, f"{namespace}/lanes/markers", self._store(self.markers), reliable)
        topic = image_topic + "/compressed" if compressed else image_topic
        self.publisher = self.node.create_publisher(CompressedImage if compressed else Image, topic,
                                                    qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _store(self, into: list, timed: bool = False):
        def callback(msg) -> None:
            with self.cond:
                into.append((time.time(), msg) if timed else msg)
                self.cond.notify_all()
        return callback

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == DIAG_NAME:
                with self.cond:
                    self.diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values},
                                             level_value(status.level)))
                    self.cond.notify_all()

    def listen(self, topic: str, msg_type, qos) -> list:
        """Subscribe to ``topic`` with ``qos``; the returned list fills with the messages received."""
        received: list = []
        self.node.create_subscription(msg_type, topic, self._store(received), qos)
        return received

    def subscribe_debug_images(self) -> None:
        self.node.create_subscription(Image, "/lanes/debug_image", self._store(self.debug_images),
                                      qos_profile_sensor_data)

    def wait_future(self, future, timeout: float):
        """The result of an rclpy future (service call) that this client's executor completes."""
        def wake(_):
            with self.cond:
                self.cond.notify_all()

        future.add_done_callback(wake)
        assert self.wait_for(future.done, timeout), f"no answer within {timeout} s"
        return future.result()

    def wait_for(self, predicate, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def wait_ready(self, node: NodeProcess, timeout: float = STARTUP_TIMEOUT, restarts: int = 1) -> None:
        """Until the node's image subscription and /lanes publisher are matched with ours
        (``NodeProcess.wait_discovered``: ``restarts=0`` for a node whose state a restart would lose,
        e.g. a lifecycle node already activated)."""
        node.wait_discovered(lambda: self.publisher.get_subscription_count() > 0
                             and self.node.count_publishers(f"{self.namespace}/lanes") > 0, timeout, restarts)

    def stamp(self):
        return self.node.get_clock().now().to_msg()

    def answers(self, key: tuple[int, int]) -> list[LaneArray]:
        return [msg for _, msg in self.lanes if stamp_key(msg.header.stamp) == key]

    def request(self, msg, timeout: float = 20.0, resend_every: float = 2.0) -> LaneArray:
        """Publish ``msg`` (fresh stamp) until its LaneArray comes back; best effort may lose one."""
        msg.header.stamp = self.stamp()
        key = stamp_key(msg.header.stamp)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.publisher.publish(msg)
            if self.wait_for(lambda: self.answers(key), min(resend_every, max(deadline - time.monotonic(), 0))):
                return self.answers(key)[0]
        raise AssertionError(f"no LaneArray for frame {key} within {timeout} s")

    def request_as_is(self, msg, timeout: float = 20.0, resend_every: float = 2.0) -> LaneArray:
        """Publish ``msg`` with its own header (stamp kept) until a LaneArray with that header comes back."""
        def matching():
            return [m for _, m in self.lanes if m.header.frame_id == msg.header.frame_id
                    and stamp_key(m.header.stamp) == stamp_key(msg.header.stamp)]

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.publisher.publish(msg)
            if self.wait_for(matching, min(resend_every, max(deadline - time.monotonic(), 0))):
                return matching()[0]
        raise AssertionError(f"no LaneArray for frame {msg.header.frame_id} within {timeout} s")

    def set_parameters(self, node_name: str = "lane_detector", **values):
        """Set parameters of the node; the SetParametersResult of each, in order."""
        if node_name not in self._param_clients:
            self._param_clients[node_name] = AsyncParameterClient(self.node, node_name)
            assert self._param_clients[node_name].wait_for_services(timeout_sec=10)
        future = self._param_clients[node_name].set_parameters([Parameter(k, value=v) for k, v in values.items()])
        return self.wait_future(future, 20).results

    def diagnostics_after(self, since: float, predicate=lambda values: True, timeout: float = 10.0) -> dict[str, str]:
        """First diagnostics (our node's status) received after monotonic ``since`` that satisfies predicate."""
        found: list[dict[str, str]] = []

        def match() -> bool:
            found[:] = [v for t, v, _ in self.diagnostics if t > since and predicate(v)]
            return bool(found)

        assert self.wait_for(match, timeout), f"no matching diagnostics within {timeout} s: {self.diagnostics[-1:]}"
        return found[0]

    def close(self) -> None:
        """Stop the nodes first: Fast DDS's close of this participant can wait, holding the GIL, on a TCP
        channel to a node that has stopped reading (lanesad_ros.ros.evaluate.run_live)."""
        rclpy.shutdown(context=self.context)
        self._thread.join(timeout=10)


def image_message(bgr: np.ndarray, encoding: str = "bgr8", frame_id: str = "camera", pad: int = 0) -> Image:
    msg = bgr_to_image_msg(bgr, Header(frame_id=frame_id), encoding)
    if pad:
        rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        padded = np.concatenate([rows, np.zeros((msg.height, pad), np.uint8)], axis=1)
        msg.step += pad
        msg.data = padded.tobytes()
    return msg


def raw_message(encoding: str, height: int, width: int, step: int, data: bytes) -> Image:
    msg = Image(height=height, width=width, encoding=encoding, step=step, data=data)
    msg.header.frame_id = "camera"
    return msg


def check_answer(answer: LaneArray, msg, width: int, height: int, weights_name: str) -> None:
    assert answer.header.frame_id == msg.header.frame_id
    assert stamp_key(answer.header.stamp) == stamp_key(msg.header.stamp)
    assert (answer.image_width, answer.image_height) == (width, height)
    assert answer.model_name == "enet_sad" and answer.weights_name == weights_name
    assert answer.inference_latency_ms > 0
    for lane in answer.lanes:
        assert lane.slot in (0, 1, 2, 3, 255) and 0.0 <= lane.confidence <= 1.0
        xy = np.array([(p.x, p.y) for p in lane.image_points])
        assert len(xy) >= 2 and (xy[:, 1] <= height).all()


