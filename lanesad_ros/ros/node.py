"""The lane detector node: camera images in; /lanes, overlays, markers and diagnostics out.

Run it as ``lane_detector --ros-args --params-file config/lane_detector.yaml`` (pip path),
``ros2 run lanesad_ros lane_detector`` or ``ros2 launch lanesad_ros lane_detector.launch.py``.

Inference runs on a worker thread, never in the subscription callback: the callback only
puts the message into a one-slot mailbox. A frame still waiting there when a newer one
arrives is dropped (and counted), so the newest frame always wins and latency cannot pile
up when frames come faster than the network runs. The debug overlay has its own worker
and mailbox, so drawing never delays /lanes.

/diagnostics (1 Hz, status "lane_detector: lane detection", WARN while bad frames arrive or
CUDA was requested but is missing) reports: input/output rate (Hz, last second),
frames_received / _processed, frames_dropped (replaced in the node's one-slot mailbox),
frames_missed (gaps in the publishers' sequence numbers: replaced in the depth-1 DDS queue
or lost in transport), errors and errors.<kind> (unsupported_encoding, zero_size,
bad_layout, corrupt_image, too_large, detector, internal), median and max over the last
second of inference_latency_ms, e2e_receive_to_publish_ms (callback -> /lanes published)
and e2e_stamp_to_publish_ms (image header stamp -> /lanes published; "nan" in a second
without frames; frames whose stamp is no time on the node's clock -- 0, ahead of it or over
60 s old -- are left out and counted in frames_without_stamp_latency), device,
requested_device, backend, backend_reason, model, weights, input_size.
"""
from __future__ import annotations

import math
import os
import statistics
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.msg import LaneArray
from lanesad_ros.overlay import draw_lanes
from lanesad_ros.ros.convert import (
    ImageConversionError,
    bgr_to_image_msg,
    detections_to_lane_array,
    image_msg_to_bgr,
    lanes_to_marker_array,
    lanes_to_point_cloud,
    stamp_to_ns,
)
from lanesad_ros.tracking import LaneTracker
from lanesad_ros.weights import default_weights_path

NODE_NAME = "lane_detector"


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: default (its type is the parameter's type), meaning, limits."""

    name: str
    default: Any
    description: str
    read_only: bool = True
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()


# Keep in step with config/lane_detector.yaml (a test checks they agree).
PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("image_topic", "/image_raw", "Camera image topic (sensor_msgs/Image); with input_compressed the "
              "node subscribes to <image_topic>/compressed instead."),
    ParamSpec("input_compressed", False, "Subscribe to sensor_msgs/CompressedImage (jpeg/png) on <image_topic>/compressed."),
    ParamSpec("weights", "", "Weights file (.safetensors with its .json metadata); empty = the shipped default weights."),
    ParamSpec("device", "auto", "Inference device; cuda falls back to cpu with a warning when CUDA is absent.",
              choices=("auto", "cuda", "cpu")),
    ParamSpec("backend", "auto", "Inference backend; auto runs the choice remembered for this machine, weights and "
              "input size, or times the candidates once and remembers (LANESAD_REMEASURE_BACKEND=1 re-times).",
              choices=("auto", "torch", "onnxruntime", "openvino", "openvino-int8")),
    ParamSpec("exist_threshold", -1.0, "Lane existence probability above which a lane is reported; -1 = the "
              "weights' recommended value (metadata), else 0.5.", read_only=False, range=(-1.0, 1.0)),
    ParamSpec("prob_threshold", -1.0, "Per-row lane probability above which a row contributes a point; -1 = the "
              "weights' recommended value (metadata), else 0.3.", read_only=False, range=(-1.0, 1.0)),
    ParamSpec("crop_top", -1.0, "Fraction of image rows (sky) cut off the top before the network; -1 = from the "
              "weights metadata (what the network was trained with).", range=(-1.0, 0.95)),
    ParamSpec("max_image_pixels", 40_000_000, "Frames with more pixels are rejected (counted as errors) to "
              "protect latency and memory.", read_only=False, range=(1, 2**31 - 1)),
    ParamSpec("publish_debug_image", False, "Always publish the overlay on lanes/debug_image; when false it is "
              "drawn only while someone subscribes.", read_only=False),
    ParamSpec("publish_markers", True, "Publish lanes/markers (RViz MarkerArray of ground-plane lanes).",
              read_only=False),
    ParamSpec("publish_points", True, "Publish lanes/points (PointCloud2 of ground-plane lane points).",
              read_only=False),
    ParamSpec("tracking", False, "Track lanes across frames (slot-consistent temporal smoothing).", read_only=False),
    ParamSpec("camera_info_topic", "", "sensor_msgs/CameraInfo topic for the intrinsics; empty = use fx, fy, cx, cy, "
              "dist below."),
    ParamSpec("fx", 0.0, "Focal length x in pixels; 0 = no camera model from parameters (no ground points)."),
    ParamSpec("fy", 0.0, "Focal length y in pixels; 0 = same as fx."),
    ParamSpec("cx", 0.0, "Principal point x in pixels."),
    ParamSpec("cy", 0.0, "Principal point y in pixels."),
    ParamSpec("dist", [0.0, 0.0, 0.0, 0.0, 0.0], "Distortion coefficients (OpenCV / plumb_bob order k1 k2 p1 p2 k3)."),
    ParamSpec("image_width", 0, "Image width the intrinsics were calibrated at; frames of another size get "
              "scaled intrinsics. 0 = the size of the incoming frames.", range=(0, 100_000)),
    ParamSpec("image_height", 0, "Image height the intrinsics were calibrated at (see image_width).",
              range=(0, 100_000)),
    ParamSpec("camera_height", 1.5, "Height of the camera above the road in metres.", range=(0.01, 100.0)),
    ParamSpec("camera_x", 0.0, "Camera position forward of the ground frame origin, metres."),
    ParamSpec("camera_y", 0.0, "Camera position left of the ground frame origin, metres."),
    ParamSpec("pitch", 0.0, "Camera pitch in radians, positive = looking down.", range=(-1.57, 1.57)),
    ParamSpec("roll", 0.0, "Camera roll in radians, positive = right side down.", range=(-1.57, 1.57)),
    ParamSpec("yaw", 0.0, "Camera yaw in radians, positive = looking left.", range=(-1.57, 1.57)),
    ParamSpec("homography", [0.0] * 9, "Undistorted pixel -> ground (x, y) homography, 9 values row-major; all zeros = "
              "use the mounting (camera_height, pitch, roll, yaw) instead."),
    ParamSpec("ground_frame_id", "base_link", "Vehicle frame of the ground-plane lane points (REP 103)."),
)
SPECS = {spec.name: spec for spec in PARAMETERS}
THRESHOLDS = ("exist_threshold", "prob_threshold")  # -1 = the weights' recommendation
_DIST_LENGTHS = (0, 4, 5, 8, 12, 14)


def process_age_ms() -> float:
    """Milliseconds since this process started, from /proc/self/stat (Linux); nan elsewhere."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return (time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")) * 1e3
    except (OSError, ValueError, IndexError, AttributeError):
        return math.nan


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only)
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None:
        low, high = spec.range
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    return descriptor


def validate_parameter(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``name`` (beyond type and range, which rclpy checks), or None."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if name == "dist" and len(value) not in _DIST_LENGTHS:
        return f"dist needs 0, 4, 5, 8, 12 or 14 coefficients, got {len(value)}"
    if name == "homography" and len(value) != 9:
        return f"homography needs 9 values (3x3 row-major), got {len(value)}"
    if name == "image_topic" and not value:
        return "image_topic must not be empty"
    return None


class LatestMailbox:
    """One-slot hand-over between threads: a newer item replaces an unprocessed one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when it replaced one that was never taken (a dropped frame)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
        return replaced

    def get(self) -> Any:
        """The newest item, waiting for one; None once closed."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


STAMP_LATENCY_MAX_S = 60.0  # an older stamp is no time on this clock (a frame is never that late here)


def stamp_latency_ms(stamp_ns: int, now_ns: int) -> float | None:
    """Header stamp -> now in ms, or None where the stamp is no time on this clock: 0 (a camera that
    leaves stamps empty), later than now or older than STAMP_LATENCY_MAX_S (another clock, e.g. a
    replayed bag without sim time)."""
    if stamp_ns == 0 or stamp_ns > now_ns or now_ns - stamp_ns > STAMP_LATENCY_MAX_S * 1e9:
        return None
    return (now_ns - stamp_ns) / 1e6


class FrameStats:
    """Counters and latency windows behind /diagnostics; windows reset at each report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = self.missed = 0
        self.stamp_latency_unavailable = 0  # frames whose header stamp is no time on this clock
        self.errors: Counter[str] = Counter()
        self._window_start = time.monotonic()
        self._window_received = self._window_processed = 0
        self._window_errors = 0
        self._inference: deque[float] = deque(maxlen=10_000)
        self._receive_to_publish: deque[float] = deque(maxlen=10_000)
        self._stamp_to_publish: deque[float] = deque(maxlen=10_000)

    def on_receive(self, dropped: bool, missed: int) -> None:
        with self._lock:
            self.received += 1
            self._window_received += 1
            self.dropped += int(dropped)
            self.missed += missed

    def on_error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1
            self._window_errors += 1

    def on_published(self, inference_ms: float, receive_to_publish_ms: float,
                     stamp_to_publish_ms: float | None) -> None:
        """``stamp_to_publish_ms`` None: the frame's stamp gives no latency (see ``stamp_latency_ms``)."""
        with self._lock:
            self.processed += 1
            self._window_processed += 1
            self._inference.append(inference_ms)
            self._receive_to_publish.append(receive_to_publish_ms)
            if stamp_to_publish_ms is None:
                self.stamp_latency_unavailable += 1
            else:
                self._stamp_to_publish.append(stamp_to_publish_ms)

    def report(self) -> dict[str, Any]:
        """Totals plus rates and latency statistics since the previous report."""
        with self._lock:
            now = time.monotonic()
            span = max(now - self._window_start, 1e-6)
            out = {
                "input_rate_hz": self._window_received / span,
                "output_rate_hz": self._window_processed / span,
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "frames_missed": self.missed,
                "errors": sum(self.errors.values()),
                "window_errors": self._window_errors,
                "errors_by_kind": dict(self.errors),
                "stamp_latency_unavailable": self.stamp_latency_unavailable,
            }
            for key, values in (("inference_latency_ms", self._inference),
                                ("e2e_receive_to_publish_ms", self._receive_to_publish),
                                ("e2e_stamp_to_publish_ms", self._stamp_to_publish)):
                out[key] = statistics.median(values) if values else math.nan
                out[key + "_max"] = max(values) if values else math.nan
                values.clear()
            self._window_start = now
            self._window_received = self._window_processed = self._window_errors = 0
            return out


def error_kind(exc: BaseException) -> str:
    """Diagnostics bucket of a per-frame failure."""
    if isinstance(exc, ImageConversionError):
        return exc.kind
    if isinstance(exc, DetectorError):
        return "detector"
    return "internal"


class LaneDetectorNode(Node):
    """ROS 2 node wrapping :class:`lanesad_ros.detector.Detector`; see the module docstring."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        self.params = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        self.add_post_set_parameters_callback(self._after_set_parameters)

        self.stats = FrameStats()
        self._last_warned: dict[str, float] = {}
        self._sequences: dict[bytes, int] = {}  # last publication sequence number per image publisher
        self._answered_once = False
        self.requested_device = self.params["device"]
        # Publishers and subscriptions first: DDS discovery and the large-data connections are
        # made while the detector loads (frames that arrive meanwhile wait in the depth-1 queue).
        self._lanes_pub = self.create_publisher(LaneArray, "lanes", 10)
        self._debug_pub = self.create_publisher(Image, "lanes/debug_image", qos_profile_sensor_data)
        self._markers_pub = self.create_publisher(MarkerArray, "lanes/markers", 10)
        self._points_pub = self.create_publisher(PointCloud2, "lanes/points", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        image_qos = QoSProfile(depth=1, history=qos_profile_sensor_data.history,
                               reliability=qos_profile_sensor_data.reliability,
                               durability=qos_profile_sensor_data.durability)
        topic = self.params["image_topic"]
        if self.params["input_compressed"]:
            topic = topic.rstrip("/") + "/compressed"
            self.create_subscription(CompressedImage, topic, self._on_image, image_qos)
        else:
            self.create_subscription(Image, topic, self._on_image, image_qos)
        self.input_topic = self.resolve_topic_name(topic)
        if self.params["camera_info_topic"]:
            self.create_subscription(CameraInfo, self.params["camera_info_topic"], self._on_camera_info, image_qos)

        log = self.get_logger()
        log.info(f"start-up: process start to node {process_age_ms():.0f} ms (interpreter, imports); "
                 f"loading the detector (backend {self.params['backend']}, device {self.params['device']})")
        start = time.perf_counter()
        self.detector = self._load_detector()
        phases = ", ".join(f"{name} {ms:.0f} ms" for name, ms in self.detector.startup_phases_ms.items())
        log.info(f"start-up: detector {(time.perf_counter() - start) * 1e3:.0f} ms ({phases}); "
                 f"backend {self.detector.backend_name}: {self.detector.backend_reason}")
        self._set_tracking(self.params["tracking"])
        self._configure_camera_from_parameters()

        self._inbox = LatestMailbox()
        self._debug_inbox = LatestMailbox()
        self._workers = [threading.Thread(target=self._inference_loop, name="lane_inference", daemon=True),
                         threading.Thread(target=self._debug_loop, name="lane_debug_image", daemon=True)]
        for worker in self._workers:
            worker.start()
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"start-up: ready {process_age_ms():.0f} ms after process start; "
            f"listening on {self.input_topic}; model {self.detector.model_name} "
            f"({self.detector.weights_name}, input {self.detector.preprocessor.input_size[1]}x"
            f"{self.detector.preprocessor.input_size[0]}) on {self.detector.backend_name}")

    # ----- start-up -------------------------------------------------------------------------
    def _load_detector(self) -> Detector:
        """Detector from the weights parameter; a CUDA request without CUDA falls back to CPU."""
        path = self.params["weights"] or str(default_weights_path())
        options = dict(backend=self.params["backend"], background=True, on_backend_chosen=self._on_backend_chosen,
                       **{name: self.params[name] for name in THRESHOLDS if self.params[name] >= 0.0})
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

    def _configure_camera_from_parameters(self) -> None:
        """Intrinsics from parameters (unless a CameraInfo topic provides them) and the mounting."""
        from lanesad_ros.camera import Mounting

        p = self.params
        self._calibration: tuple | None = None  # (K 3x3, dist, width, height, distortion model)
        self._projectors: dict[tuple[int, int], Any] = {}
        self._mounting = None
        homography = np.asarray(p["homography"], dtype=np.float64)
        self._homography = homography.reshape(3, 3) if np.any(homography) else None
        if self._homography is None:
            self._mounting = Mounting(height_m=p["camera_height"], pitch_rad=p["pitch"], roll_rad=p["roll"],
                                      yaw_rad=p["yaw"], x_m=p["camera_x"], y_m=p["camera_y"])
        if p["camera_info_topic"] or p["fx"] <= 0.0:
            return
        fy = p["fy"] or p["fx"]
        k = [[p["fx"], 0.0, p["cx"]], [0.0, fy, p["cy"]], [0.0, 0.0, 1.0]]
        self._calibration = (k, list(p["dist"]), p["image_width"], p["image_height"], "plumb_bob")
        if p["image_width"] and p["image_height"]:
            self._ground_projector(p["image_width"], p["image_height"])  # bad intrinsics fail at start-up

    def _on_camera_info(self, msg: CameraInfo) -> None:
        calibration = (np.asarray(msg.k).reshape(3, 3).tolist(), list(msg.d), msg.width, msg.height,
                       msg.distortion_model or "plumb_bob")
        if calibration == self._calibration:
            return
        previous = self._calibration
        self._calibration, self._projectors = calibration, {}
        try:
            self._ground_projector(msg.width, msg.height)
        except ValueError as exc:
            self._calibration = previous
            self.stats.on_error("camera_info")
            self._warn_throttled("camera_info", f"ignoring CameraInfo on {self.params['camera_info_topic']}: {exc}")
            return
        self.get_logger().info(f"camera model from {self.params['camera_info_topic']}: {msg.width}x{msg.height}, "
                               f"fx={msg.k[0]:.1f}; ground points in {self.params['ground_frame_id']}")

    def _ground_projector(self, width: int, height: int):
        """GroundProjector for frames of this size (intrinsics scaled when calibrated at another size), or None."""
        from lanesad_ros.camera import CameraModel, GroundProjector

        calibration = self._calibration
        if calibration is None:
            return None
        projector = self._projectors.get((width, height))
        if projector is None:
            k, dist, cal_width, cal_height, model = calibration
            camera = CameraModel(K=k, dist=dist, width=cal_width or width, height=cal_height or height,
                                 distortion_model=model)
            if (camera.width, camera.height) != (width, height):
                camera = camera.scaled(width, height)
            projector = GroundProjector(camera, mounting=self._mounting, homography=self._homography)
            self._projectors[(width, height)] = projector
        return projector

    # ----- parameters -----------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            reason = validate_parameter(param.name, param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params) -> None:
        """Apply runtime changes (only non-read-only parameters can get here after start-up)."""
        changed = {param.name: param.value for param in params}
        self.params.update(changed)
        thresholds = {name: value if value >= 0.0 else getattr(self.detector.default_config, name)
                      for name, value in changed.items() if name in THRESHOLDS}
        if thresholds:
            self.detector.set_postprocess(**thresholds)
        if "tracking" in changed:
            self._set_tracking(changed["tracking"])

    def _set_tracking(self, enabled: bool) -> None:
        self.detector.tracker = LaneTracker() if enabled else None

    # ----- per frame ------------------------------------------------------------------------
    def _on_image(self, msg: Any, info: dict) -> None:
        """Subscription callback: hand the frame to the worker, nothing else.

        Gaps in a publisher's sequence numbers are frames that never reached this callback
        (replaced in the depth-1 DDS queue while we were busy, or lost on the way).
        """
        dropped = self._inbox.put((msg, time.monotonic()))
        missed = 0
        sequence = info.get("publication_sequence_number")
        if sequence:
            publisher = bytes(info["publisher_gid"]["data"])
            previous = self._sequences.get(publisher)
            missed = max(0, sequence - previous - 1) if previous is not None else 0
            self._sequences[publisher] = sequence
        self.stats.on_receive(dropped, missed)

    def _inference_loop(self) -> None:
        while (item := self._inbox.get()) is not None:
            msg, received = item
            try:
                self._process(msg, received)
            except Exception as exc:  # a bad frame must never stop the node
                kind = error_kind(exc)
                self.stats.on_error(kind)
                self._warn_throttled(kind, f"frame {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d} "
                                           f"skipped ({kind}): {exc}")

    def _warn_throttled(self, kind: str, text: str, period: float = 5.0) -> None:
        """Warn at most once per ``period`` seconds for each kind of problem, so one flood of
        bad frames neither floods the log nor hides a different problem arriving meanwhile."""
        now = time.monotonic()
        if now - self._last_warned.get(kind, -math.inf) >= period:
            self._last_warned[kind] = now
            self.get_logger().warning(text)

    def _process(self, msg: Any, received: float) -> None:
        bgr = image_msg_to_bgr(msg, max_pixels=self.params["max_image_pixels"])
        self.detector.camera = self._ground_projector(bgr.shape[1], bgr.shape[0])
        det = self.detector.detect(bgr)
        frame = self.params["ground_frame_id"]
        self._lanes_pub.publish(detections_to_lane_array(det, msg.header, frame))
        published = time.monotonic()
        if not self._answered_once:
            self._answered_once = True
            self.get_logger().info(f"start-up: first LaneArray {process_age_ms():.0f} ms after process start "
                                   f"(frame waited {(published - received) * 1e3:.0f} ms in the node, "
                                   f"detect {det.latency_ms:.0f} ms)")
        self.stats.on_published(det.latency_ms, (published - received) * 1e3,
                                stamp_latency_ms(stamp_to_ns(msg.header.stamp), self.get_clock().now().nanoseconds))
        if self.params["publish_debug_image"] or self._debug_pub.get_subscription_count() > 0:
            self._debug_inbox.put((bgr, det, msg.header))
        if self.detector.camera is not None:
            if self.params["publish_markers"]:
                self._markers_pub.publish(lanes_to_marker_array(det, msg.header, frame))
            if self.params["publish_points"]:
                self._points_pub.publish(lanes_to_point_cloud(det, msg.header, frame))

    def _debug_loop(self) -> None:
        while (item := self._debug_inbox.get()) is not None:
            bgr, det, header = item
            try:
                self._debug_pub.publish(bgr_to_image_msg(draw_lanes(bgr, det.lanes), header))
            except Exception as exc:
                self.stats.on_error("debug_image")
                self._warn_throttled("debug_image", f"debug image failed: {exc}")

    # ----- diagnostics ----------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        report = self.stats.report()
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: lane detection"
        status.hardware_id = self.detector.device
        warnings = []
        if self.device_note:
            warnings.append("cuda unavailable, on cpu")
        if report["window_errors"]:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(report["errors_by_kind"].items()))
            warnings.append(f"{report['window_errors']} bad frames (total by kind: {kinds})")
        status.level = DiagnosticStatus.WARN if warnings else DiagnosticStatus.OK
        status.message = "; ".join(warnings) or (
            f"{report['input_rate_hz']:.1f} Hz in, {report['output_rate_hz']:.1f} Hz out")
        values = {
            "input_topic": self.input_topic,
            "input_rate_hz": f"{report['input_rate_hz']:.2f}",
            "output_rate_hz": f"{report['output_rate_hz']:.2f}",
            "frames_received": str(report["frames_received"]),
            "frames_processed": str(report["frames_processed"]),
            "frames_dropped": str(report["frames_dropped"]),
            "frames_missed": str(report["frames_missed"]),
            "errors": str(report["errors"]),
            "frames_without_stamp_latency": str(report["stamp_latency_unavailable"]),
        }
        for kind, count in sorted(report["errors_by_kind"].items()):
            values[f"errors.{kind}"] = str(count)
        for key in ("inference_latency_ms", "e2e_receive_to_publish_ms", "e2e_stamp_to_publish_ms"):
            values[key] = f"{report[key]:.2f}"
            values[key + "_max"] = f"{report[key + '_max']:.2f}"
        values.update({
            "device": self.detector.device,
            "requested_device": self.requested_device,
            "device_note": self.device_note,
            "backend": self.detector.backend_name,
            "backend_reason": self.detector.backend_reason,
            "model": self.detector.model_name,
            "weights": str(self.detector.weights_path or self.detector.weights_name),
            "input_size": "x".join(str(v) for v in self.detector.preprocessor.input_size[::-1]),
            "tracking": str(self.params["tracking"]).lower(),
            "ground_points": str(self._calibration is not None).lower(),
        })
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        diag = DiagnosticArray(status=[status])
        diag.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(diag)

    def close(self) -> None:
        """Stop the workers and destroy the node."""
        self._inbox.close()
        self._debug_inbox.close()
        for worker in self._workers:
            worker.join(timeout=5.0)
        self.destroy_node()


def main(argv: list[str] | None = None) -> int:
    """Console script ``lane_detector``: ROS arguments (--ros-args ...) are read by rclpy."""
    rclpy.init(args=argv)
    logger = rclpy.logging.get_logger(NODE_NAME)
    try:
        node = LaneDetectorNode()
    except ParameterException as exc:
        logger.fatal(f"invalid parameter: {exc}")
        rclpy.try_shutdown()
        return 2
    except (ValueError, OSError) as exc:  # weights, device, backend, camera: the message names the culprit
        logger.fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
