"""The lane detector node: camera images in; /lanes, overlays, markers and diagnostics out.

Run it as ``lane_detector --ros-args --params-file config/lane_detector.yaml`` (pip path),
``ros2 run lanesad_ros lane_detector`` or ``ros2 launch lanesad_ros lane_detector.launch.py``.
``lane_detector_lifecycle`` runs the same node as a managed (lifecycle) node, see
:mod:`lanesad_ros.ros.lifecycle`.

Threading (:mod:`lanesad_ros.ros.worker`): the subscription callback only puts the frame
into the inference worker's one-slot mailbox; a frame still waiting there when a newer one
arrives is dropped (and counted), so the newest frame always wins and latency cannot pile
up. The worker owns the Detector: parameter changes (thresholds, tracking) are queued by
the parameter callback and applied by the worker between two frames. The debug overlay has
its own worker and mailbox, so drawing never delays /lanes.

Topics (relative, so a namespace or the launch file's ``lanes_topic`` moves them together):
``lanes`` (lanesad_ros/LaneArray), ``lanes/debug_image`` (sensor_msgs/Image),
``lanes/markers`` (visualization_msgs/MarkerArray, with the ego lane), ``lanes/points``
(sensor_msgs/PointCloud2), ``lanes/model`` (lanesad_ros/LaneModel: ground cubics with their
uncertainty, marking type and colour, the filtered ego lane; :mod:`lanesad_ros.road`),
all published reliable, keep-last 1 (REP 2003: sensor *inputs* are subscribed best-effort;
outputs reliable so RViz, image_view and rosbag2 with their default reliable QoS receive them,
and best-effort subscribers match as well); ``/diagnostics`` (see
:mod:`lanesad_ros.ros.diagnostics`).
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from lanesad_ros.camera import ImageSizeMismatch
from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.msg import LaneArray, LaneModel
from lanesad_ros.overlay import draw_lanes
from lanesad_ros.road import OdometryGate, RoadModel, RoadModelStage
from lanesad_ros.ros.convert import (
    bgr_to_image_msg,
    detections_to_lane_array,
    image_msg_to_bgr,
    lanes_to_marker_array,
    lanes_to_point_cloud,
    stamp_to_ns,
)
from lanesad_ros.ros.convert_road import ego_lane_markers, road_model_to_lane_model
from lanesad_ros.ros.diagnostics import FrameStats, build_status, stamp_latency_ms, stamp_problem
from lanesad_ros.ros.entry import (
    arm_teardown_watchdog,
    begin_stopping,
    install_quiet_signal_handlers,
    mark_running,
    ros_init_problem,
    stop_deferred,
    stop_requested,
)
from lanesad_ros.ros.ground import GroundModels
from lanesad_ros.ros.parameters import (
    DECODER_SETTINGS,
    PARAMETERS,
    SPECS,
    descriptor,
    unknown_overrides,
    validate_parameter,
)
from lanesad_ros.ros.worker import InferenceWorker, error_kind
from lanesad_ros.tracking import LaneTracker
from lanesad_ros.weights import default_weights_path

NODE_NAME = "lane_detector"
STOP_POLL_S = 0.1  # the spin loop looks for a requested stop this often when idle

# Outputs: reliable so default (reliable) viewers and recorders match; depth 1 keeps latency bounded.
OUTPUT_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
# Inputs: sensor data (best effort) with one frame of queue: the newest frame wins.
INPUT_QOS = QoSProfile(depth=1, history=qos_profile_sensor_data.history,
                       reliability=qos_profile_sensor_data.reliability,
                       durability=qos_profile_sensor_data.durability)
OUTPUTS = {"lanes": LaneArray, "lanes/debug_image": Image, "lanes/markers": MarkerArray,
           "lanes/points": PointCloud2, "lanes/model": LaneModel}


def process_age_ms() -> float:
    """Milliseconds since this process started, from /proc/self/stat (Linux); nan elsewhere."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return (time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")) * 1e3
    except (OSError, ValueError, IndexError, AttributeError):
        return math.nan


class LaneDetectorCore:
    """What the plain and the lifecycle node share; mixed into an rclpy Node (or LifecycleNode).

    ``_declare`` (in the constructor) declares the parameters; ``_configure`` loads the
    weights and backend; ``_activate`` creates publishers, subscriptions, workers and the
    diagnostics timer; ``_deactivate`` removes them again (the Detector stays loaded);
    ``_cleanup`` releases the Detector.
    """

    detector: Detector | None
    # How to change a start-up parameter (weights, device, camera, ...) of this kind of node.
    STARTUP_CHANGE = "restart the node with the new value (-p name:=value or the params file)"

    def _declare(self) -> None:
        self.detector = None  # configured (not None): start-up parameters are refused
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
        self.params = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        given = getattr(self, "_parameter_overrides", {})  # rclpy keeps the node's -p / params-file entries there
        for name, close in unknown_overrides(given, self.list_parameters([], 0).names):  # ROS ignores them silently
            self.get_logger().warning(f"parameter {name!r} is not one of this node's: ignored ("
                                      + (f"did you mean {close!r}? " if close else "")
                                      + "fine if it is meant for other nodes, as a /** entry)")
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self.stats = FrameStats()
        self.requested_device = self.params["device"]
        self.device_note = ""
        self.ground: GroundModels | None = None
        self.road_stage: RoadModelStage | None = None  # ground model and ego lane, on the inference worker
        self.odometry = OdometryGate(self.params["odom_max_age"]) if self.params["odom_topic"] else None
        self.worker: InferenceWorker | None = None
        self.input_topic = ""
        self._inputs: list[Any] = []  # subscriptions and the diagnostics timer of the active state
        self._pubs: dict[str, Any] = {}
        self._debug_worker: InferenceWorker | None = None
        self._last_warned: dict[str, float] = {}
        self._sequences: dict[bytes, int] = {}  # last publication sequence number per image publisher
        self._answered_once = False

    # ----- configure / cleanup --------------------------------------------------------------
    def _configure(self) -> None:
        """Camera model and Detector (weights + backend) from the parameters; raises ValueError/OSError."""
        self.ground = GroundModels(self.params)
        self.requested_device = self.params["device"]
        log = self.get_logger()
        log.info(f"start-up: process start to node {process_age_ms():.0f} ms (interpreter, imports); "
                 f"loading the detector (backend {self.params['backend']}, device {self.params['device']})")
        start = time.perf_counter()
        with stop_deferred():  # torch's import runs Python inside C++ calls: a signal must not raise there
            self.detector = self._load_detector()
        self.detector.start_backend_choice()  # only once start-up can no longer be abandoned
        phases = ", ".join(f"{name} {ms:.0f} ms" for name, ms in self.detector.startup_phases_ms.items())
        log.info(f"start-up: detector {(time.perf_counter() - start) * 1e3:.0f} ms ({phases}); "
                 f"backend {self.detector.backend_name}: {self.detector.backend_reason}")
        self.detector.tracker = self._tracker()
        self.road_stage = RoadModelStage(markings_per_frame=self.params["markings_per_frame"])

    def _tracker(self) -> LaneTracker | None:
        return LaneTracker(max_gap_s=self.params["tracking_max_gap"]) if self.params["tracking"] else None

    def _load_detector(self) -> Detector:
        """Detector from the weights parameter; a CUDA request without CUDA falls back to CPU."""
        path = self.params["weights"] or str(default_weights_path())
        options = dict(backend=self.params["backend"], background=True, on_backend_chosen=self._on_backend_chosen,
                       **{name: self.params[name] for name in DECODER_SETTINGS if self.params[name] >= 0.0})
        self.device_note = ""
        try:
            detector = Detector.from_weights(path, device=self.params["device"], **options)
        except DetectorError as cuda_exc:
            if self.params["device"] != "cuda":
                raise
            detector = Detector.from_weights(path, device="cpu", **options)  # re-raises weights errors
            self.device_note = f"cuda requested but unavailable, running on cpu: {cuda_exc}"
            self.get_logger().warning(self.device_note)
        if self.params["crop_top"] >= 0.0:
            detector.preprocessor = replace(detector.preprocessor, crop_top=self.params["crop_top"])
            detector.set_postprocess()  # rebuild the row tables for the new crop
        return detector

    def _on_backend_chosen(self, detector: Detector) -> None:
        """Called from the detector's background measurement (first start-up on a machine)."""
        self.get_logger().info(f"start-up: backend {detector.backend_name} after measuring "
                               f"{detector.startup_phases_ms.get('background_choice', math.nan):.0f} ms in the "
                               f"background: {detector.backend_reason}")

    def _cleanup(self) -> None:
        """Release the Detector (weights, backend sessions) and the camera model."""
        self.detector = None
        self.ground = None

    # ----- activate / deactivate ------------------------------------------------------------
    def _activate(self) -> None:
        """Publishers, the input subscriptions and the diagnostics timer, then the workers."""
        self._open_topics()
        self._start_workers()

    def _open_topics(self) -> None:
        """Publishers, subscriptions, diagnostics timer. Their callbacks run only once the executor
        spins, so the plain node opens them before loading the detector: DDS discovery and the
        large-data connections are made meanwhile (frames wait in the depth-1 queue)."""
        self._pubs = {name: self.create_publisher(msg_type, name, OUTPUT_QOS) for name, msg_type in OUTPUTS.items()}
        self._pubs["/diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        topic = self.params["image_topic"]
        if self.params["input_compressed"]:
            topic = topic.rstrip("/") + "/compressed"
            self._inputs.append(self.create_subscription(CompressedImage, topic, self._on_image, INPUT_QOS))
        else:
            self._inputs.append(self.create_subscription(Image, topic, self._on_image, INPUT_QOS))
        self.input_topic = self.resolve_topic_name(topic)
        if self.params["camera_info_topic"]:
            self._inputs.append(self.create_subscription(CameraInfo, self.params["camera_info_topic"],
                                                         self._on_camera_info, INPUT_QOS))
        if self.odometry is not None:
            self._inputs.append(self.create_subscription(Odometry, self.params["odom_topic"], self._on_odometry,
                                                         INPUT_QOS))
        self._inputs.append(self.create_timer(1.0, self._publish_diagnostics))

    def _start_workers(self) -> None:
        """The inference worker (owns the loaded Detector) and the overlay worker."""
        self.worker = InferenceWorker(self.detector, self._process, self._on_worker_error)
        # The overlay worker holds no Detector: it draws the frame and detections it is handed.
        self._debug_worker = InferenceWorker(None, self._draw_debug, self._on_debug_error, name="lane_debug_image")
        detector = self.detector
        self.get_logger().info(
            f"start-up: ready {process_age_ms():.0f} ms after process start; listening on {self.input_topic}; "
            f"model {detector.model_name} ({detector.weights_name}, input {detector.preprocessor.input_size[1]}x"
            f"{detector.preprocessor.input_size[0]}) on {detector.backend_name}")

    def _deactivate(self) -> None:
        """Stop taking frames, finish the running one, remove publishers; the Detector stays loaded."""
        for entity in self._inputs:
            if hasattr(entity, "cancel"):
                self.destroy_timer(entity)
            else:
                self.destroy_subscription(entity)
        for worker in (self.worker, self._debug_worker):
            if worker is not None:
                worker.close()
        for publisher in self._pubs.values():
            self.destroy_publisher(publisher)
        self.worker = self._debug_worker = None
        self._inputs, self._pubs = [], {}

    # ----- parameters -----------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            spec = SPECS.get(param.name)
            if spec is not None and spec.read_only and self.detector is not None:
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} is read-only while the node is configured: it is read at start-up; "
                    f"{self.STARTUP_CHANGE}"))
            reason = validate_parameter(param.name, param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params) -> None:
        """Runtime changes, applied by the worker between frames, or at once when no worker runs
        (lifecycle node not active). Start-up parameters get here only while the lifecycle node
        is unconfigured; its next configure reads them."""
        changed = {param.name: param.value for param in params}
        self.params.update(changed)
        changes: list[Callable[[Detector], None]] = []
        settings = {name: value for name, value in changed.items() if name in DECODER_SETTINGS}
        if settings:
            def set_decoder(detector: Detector) -> None:
                detector.set_postprocess(**{name: value if value >= 0.0 else getattr(detector.default_config, name)
                                            for name, value in settings.items()})
            changes.append(set_decoder)
        if "tracking" in changed or "tracking_max_gap" in changed:
            tracker = self._tracker()

            def set_tracking(detector: Detector) -> None:
                detector.tracker = tracker
            changes.append(set_tracking)
        for change in changes:
            if self.worker is not None:
                self.worker.change(change)
            elif self.detector is not None:
                change(self.detector)

    # ----- per frame ------------------------------------------------------------------------
    def _on_image(self, msg: Any, info: dict) -> None:
        """Subscription callback: hand the frame to the worker, nothing else.

        Gaps in a publisher's sequence numbers are frames that never reached this callback
        (replaced in the depth-1 DDS queue while we were busy, or lost on the way).
        """
        dropped = self.worker.submit((msg, time.monotonic()))
        missed = 0
        sequence = info.get("publication_sequence_number")
        if sequence:
            publisher = bytes(info["publisher_gid"]["data"])
            previous = self._sequences.get(publisher)
            missed = max(0, sequence - previous - 1) if previous is not None else 0
            self._sequences[publisher] = sequence
        self.stats.on_receive(dropped, missed)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            changed = self.ground.update_from_camera_info(msg)
        except ValueError as exc:
            self.stats.on_error("camera_info")
            self._warn_throttled("camera_info", f"ignoring CameraInfo on {self.params['camera_info_topic']}: {exc}")
            return
        if changed:
            images = self.ground.calibration.images
            self.get_logger().info(f"camera model from {self.params['camera_info_topic']}: {msg.width}x{msg.height}, "
                                   f"fx={msg.k[0]:.1f}; images {images.width}x{images.height} (roi, binning "
                                   f"applied); ground points in {self.params['ground_frame_id']}")

    def _on_odometry(self, msg: Odometry) -> None:
        """Keep the newest speed and yaw rate (base_link twist); checked when a frame uses them."""
        self.odometry.put(stamp_to_ns(msg.header.stamp) / 1e9, msg.twist.twist.linear.x, msg.twist.twist.angular.z)

    def _road_model(self, det: Any, bgr: Any, projector: Any, stamp_s: float) -> RoadModel:
        """The planner-facing model of this frame. Odometry that cannot be used (none yet, stale,
        NaN, implausible) is logged (throttled) and counted, and the ego lane is predicted without it."""
        motion = None
        if self.odometry is not None:
            motion, problem = self.odometry.motion_for(stamp_s)
            if problem:
                self.stats.on_error(f"odometry_{problem}")
                self._warn_throttled(f"odometry_{problem}", f"ego lane without vehicle motion: "
                                     f"{self.odometry.describe(stamp_s, problem)} on {self.params['odom_topic']}")
        return self.road_stage.update(det, bgr, projector, stamp_s, motion)

    def _process(self, detector: Detector, item: tuple[Any, float]) -> None:
        """One frame on the worker thread: convert, detect, publish."""
        msg, received = item
        bgr = image_msg_to_bgr(msg, max_pixels=self.params["max_image_pixels"])
        try:
            detector.camera = self.ground.projector(bgr.shape[1], bgr.shape[0])
        except ImageSizeMismatch as exc:  # image lanes still go out, without ground points
            detector.camera = None
            self.stats.on_error("camera_size")
            self._warn_throttled("camera_size", f"no ground points: {exc}")
        stamp_ns = stamp_to_ns(msg.header.stamp)
        det = detector.detect(bgr, stamp_s=stamp_ns / 1e9)  # the tracker ages by header time
        frame = self.params["ground_frame_id"] if detector.camera is not None else ""  # "": no camera model
        self._pubs["lanes"].publish(detections_to_lane_array(det, msg.header, frame))
        published = time.monotonic()
        if not self._answered_once:
            self._answered_once = True
            self.get_logger().info(f"start-up: first LaneArray {process_age_ms():.0f} ms after process start "
                                   f"(frame waited {(published - received) * 1e3:.0f} ms in the node, "
                                   f"detect {det.latency_ms:.0f} ms)")
        now_ns = self.get_clock().now().nanoseconds
        self.stats.on_published(det.latency_ms, (published - received) * 1e3, stamp_latency_ms(stamp_ns, now_ns),
                                stamp_problem(stamp_ns, now_ns))
        if self.params["publish_debug_image"] or self._pubs["lanes/debug_image"].get_subscription_count() > 0:
            self._debug_worker.submit((bgr, det, msg.header))
        road = self._road_model(det, bgr, detector.camera, stamp_ns / 1e9)
        self._pubs["lanes/model"].publish(road_model_to_lane_model(road, msg.header, frame))
        if detector.camera is not None:
            if self.params["publish_markers"]:
                markers = lanes_to_marker_array(det, msg.header, frame)
                markers.markers.extend(ego_lane_markers(road, msg.header, frame))
                self._pubs["lanes/markers"].publish(markers)
            if self.params["publish_points"]:
                self._pubs["lanes/points"].publish(lanes_to_point_cloud(det, msg.header, frame))

    def _on_worker_error(self, item: Any, exc: BaseException) -> None:
        kind = error_kind(exc)
        self.stats.on_error(kind)
        if item is None:
            self._warn_throttled(kind, f"parameter change failed ({kind}): {exc}")
            return
        stamp = item[0].header.stamp
        self._warn_throttled(kind, f"frame {stamp.sec}.{stamp.nanosec:09d} skipped ({kind}): {exc}")

    def _draw_debug(self, _: Any, item: tuple) -> None:
        bgr, det, header = item
        self._pubs["lanes/debug_image"].publish(bgr_to_image_msg(draw_lanes(bgr, det.lanes), header))

    def _on_debug_error(self, _: Any, exc: BaseException) -> None:
        self.stats.on_error("debug_image")
        self._warn_throttled("debug_image", f"debug image failed: {exc}")

    def _warn_throttled(self, kind: str, text: str, period: float = 5.0) -> None:
        """Warn at most once per ``period`` seconds for each kind of problem, so one flood of
        bad frames neither floods the log nor hides a different problem arriving meanwhile."""
        now = time.monotonic()
        if now - self._last_warned.get(kind, -math.inf) >= period:
            self._last_warned[kind] = now
            self.get_logger().warning(text)

    # ----- diagnostics ----------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        detector = self.detector
        info = {
            "input_topic": self.input_topic,
            "device": detector.device,
            "requested_device": self.requested_device,
            "backend": detector.backend_name,
            "backend_reason": detector.backend_reason,
            "cache_note": detector.cache_note,  # why the backend cache is not kept ("" when it is)
            # false while a first start-up measures the backends in the background (answers come
            # from torch meanwhile); replay waits for true before timing anything
            "backend_settled": str(detector.backend_choice_thread is None
                                   or not detector.backend_choice_thread.is_alive()).lower(),
            "model": detector.model_name,
            "weights": str(detector.weights_path or detector.weights_name),
            "input_size": "x".join(str(v) for v in detector.preprocessor.input_size[::-1]),
            "tracking": str(self.params["tracking"]).lower(),
            "ground_points": str(self.ground.calibration is not None).lower(),
            "odom_topic": self.params["odom_topic"],
        }
        diag = DiagnosticArray(status=[build_status(self.get_name(), self.stats.report(), info, self.device_note)])
        diag.header.stamp = self.get_clock().now().to_msg()
        self._pubs["/diagnostics"].publish(diag)


class LaneDetectorNode(LaneDetectorCore, Node):
    """The plain node: configured and active from construction; see the module docstring."""

    def __init__(self, **node_kwargs: Any) -> None:
        Node.__init__(self, NODE_NAME, **node_kwargs)
        self._declare()
        self._open_topics()  # before loading: discovery runs while the detector loads
        self._configure()
        self._start_workers()

    def close(self) -> None:
        """Stop the workers and destroy the node."""
        if self._pubs:
            self._deactivate()
        self._cleanup()
        self.destroy_node()


def run(build: Callable[[], Node], argv: list[str] | None, logger_name: str = NODE_NAME) -> int:
    """Init rclpy, build the node, spin until a stop is requested; the exit status of the console scripts.

    0 after Ctrl-C / SIGTERM at any moment (also while the node is being built, and for a second
    Ctrl-C during the teardown: see :mod:`lanesad_ros.ros.entry` for the signal phases), 2 for an
    invalid parameter or ``--ros-args`` rcl cannot parse, 1 when the node cannot start (weights,
    device, backend, camera, ROS's log folder).
    """
    install_quiet_signal_handlers()
    if stop_requested():  # a signal's SystemExit was swallowed on the way here (raised inside a __del__)
        return 0
    # No rclpy signal handlers: entry's phases own SIGINT/SIGTERM (rclpy's would chain to them and,
    # uninstalled at shutdown, swap handlers under the teardown).
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rclpy's RCLError; ROS logging is not up, so say it on stderr
        problem, code = ros_init_problem(exc)
        print(f"{logger_name}: cannot start: {problem}", file=sys.stderr)
        return code
    logger = rclpy.logging.get_logger(logger_name)
    node = None
    try:
        node = build()
    except ParameterException as exc:
        logger.fatal(f"invalid parameter: {exc}")
        return 2
    except (ValueError, OSError) as exc:  # weights, device, backend, camera: the message names the culprit
        if stop_requested():
            return 0  # interrupted while starting: the failure is a consequence of the shutdown
        logger.fatal(f"cannot start: {exc}")
        return 1
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        return 0
    except Exception:
        if stop_requested() or not rclpy.ok():  # interrupted mid-construction
            return 0
        raise
    else:
        mark_running()
        executor = rclpy.get_global_executor()
        executor.add_node(node)
        try:
            while not stop_requested():  # a signal sets it; the callback in progress finishes first
                executor.spin_once(timeout_sec=STOP_POLL_S)
        except ExternalShutdownException:
            pass
        finally:
            executor.remove_node(node)
        return 0
    finally:
        begin_stopping()
        if node is not None:
            arm_teardown_watchdog()
            node.close()
        rclpy.try_shutdown(uninstall_handlers=False)


def main(argv: list[str] | None = None) -> int:
    """Console script ``lane_detector``: ROS arguments (--ros-args ...) are read by rclpy."""
    return run(LaneDetectorNode, argv)


if __name__ == "__main__":
    sys.exit(main())
