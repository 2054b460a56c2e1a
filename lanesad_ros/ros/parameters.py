"""The lane_detector node's parameters: one table (name, default/type, meaning, limits) that
drives the declarations, their ParameterDescriptors, validation and config/lane_detector.yaml
(a test checks the file and the table agree)."""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: default (its type is the parameter's type), meaning, limits.

    ``read_only``: read at start-up (the lifecycle node's configure and activate). The node, not
    the descriptor, refuses a change while it is configured, with a reason that says how to
    apply one (restart; or cleanup, set, configure), so the descriptor leaves it writable.
    """

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
    ParamSpec("input_compressed", False, "Subscribe to sensor_msgs/CompressedImage (jpeg/png) on "
              "<image_topic>/compressed."),
    ParamSpec("weights", "", "Weights file (.safetensors with its .json metadata); empty = the shipped default "
              "weights."),
    ParamSpec("device", "auto", "Inference device; cuda falls back to cpu with a warning when CUDA is absent.",
              choices=("auto", "cuda", "cpu")),
    ParamSpec("backend", "auto", "Inference backend; auto runs the choice remembered for this machine, weights and "
              "input size, or times the candidates once and remembers (LANESAD_REMEASURE_BACKEND=1 re-times).",
              choices=("auto", "torch", "onnxruntime", "openvino", "openvino-int8")),
    ParamSpec("exist_threshold", -1.0, "Lane existence probability above which a lane is reported; -1 = the "
              "weights' recommended value (metadata), else 0.5.", read_only=False, range=(-1.0, 1.0)),
    ParamSpec("prob_threshold", -1.0, "Per-row lane probability above which a row contributes a point; -1 = the "
              "weights' recommended value (metadata), else 0.3.", read_only=False, range=(-1.0, 1.0)),
    ParamSpec("max_inner_slope", -1.0, "Flattest |dx/dy| (image columns per row) the lane nearest the camera on "
              "either side may have before it is dropped as a kerb or crossing edge; -1 = the weights' recommended "
              "value, else 6.5; 0 = off (cameras lower than about 0.6 m above the road).", read_only=False,
              range=(-1.0, 100.0)),
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
    ParamSpec("tracking_max_gap", 1.0, "Seconds of image header time after which a lane the tracker has not seen "
              "again is dropped, not blended into the next detection nor held; header stamps going back (a looped "
              "bag, a simulator reset) restart every track.", read_only=False, range=(0.01, 3600.0)),
    ParamSpec("camera_info_topic", "", "sensor_msgs/CameraInfo topic for the intrinsics; empty = use fx, fy, cx, cy, "
              "dist below."),
    ParamSpec("fx", 0.0, "Focal length x in pixels; 0 = no camera model from parameters (no ground points)."),
    ParamSpec("fy", 0.0, "Focal length y in pixels; 0 = same as fx."),
    ParamSpec("cx", 0.0, "Principal point x in pixels."),
    ParamSpec("cy", 0.0, "Principal point y in pixels."),
    ParamSpec("dist", [0.0, 0.0, 0.0, 0.0, 0.0], "Distortion coefficients (OpenCV / plumb_bob order k1 k2 p1 p2 k3)."),
    ParamSpec("image_width", 0, "Image width the intrinsics were calibrated at; resized frames get scaled "
              "intrinsics, frames of another aspect ratio no ground points (counted as errors.camera_size). 0 (with "
              "image_height 0) = the intrinsics hold for frames of any size.", range=(0, 100_000)),
    ParamSpec("image_height", 0, "Image height the intrinsics were calibrated at (see image_width).",
              range=(0, 100_000)),
    ParamSpec("camera_height", 1.5, "Height of the camera above the road in metres.", range=(0.01, 100.0)),
    ParamSpec("camera_x", 0.0, "Camera position forward of the ground frame origin, metres."),
    ParamSpec("camera_y", 0.0, "Camera position left of the ground frame origin, metres."),
    ParamSpec("pitch", 0.0, "Camera pitch in radians, positive = looking down.", range=(-1.57, 1.57)),
    ParamSpec("roll", 0.0, "Camera roll in radians, positive = right side down.", range=(-1.57, 1.57)),
    ParamSpec("yaw", 0.0, "Camera yaw in radians, positive = looking left.", range=(-1.57, 1.57)),
    ParamSpec("homography", [0.0] * 9, "Undistorted pixel (of the calibrated full image) -> ground (x, y) "
              "homography, 9 values row-major; all zeros = use the mounting (camera_height, pitch, roll, yaw) "
              "instead."),
    ParamSpec("ground_frame_id", "base_link", "Vehicle frame of the ground-plane lane points (REP 103)."),
    ParamSpec("odom_topic", "", "nav_msgs/Odometry topic (speed and yaw rate of the ground frame in its twist) that "
              "moves the ego-lane filter between frames; empty = no odometry (the filter assumes nothing about the "
              "motion)."),
    ParamSpec("odom_max_age", 0.5, "Odometry stamped more than this many seconds from a frame is stale: that frame's "
              "ego lane goes without motion (logged, counted in /diagnostics).", range=(0.01, 10.0)),
    ParamSpec("markings_per_frame", 1, "Boundaries whose marking type and colour are measured per frame (the one "
              "measured longest ago first; the others report their votes so far); 0 = every boundary, every frame.",
              range=(0, 16)),
)
SPECS = {spec.name: spec for spec in PARAMETERS}
# Runtime decoder settings (PostprocessConfig fields); -1 = the weights' recommendation, else the decoder's default
DECODER_SETTINGS = ("exist_threshold", "prob_threshold", "max_inner_slope")
_DIST_LENGTHS = (0, 4, 5, 8, 12, 14)


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=spec.name, description=spec.description, read_only=False)
    constraints = ["one of: " + ", ".join(spec.choices)] if spec.choices else []
    if spec.read_only:
        constraints.append("read at start-up (lifecycle node: at configure); refused while configured")
    descriptor.additional_constraints = "; ".join(constraints)
    if spec.range is not None:
        low, high = spec.range
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high),
                                                                  step=0.0)]
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
    if name == "ground_frame_id" and not value:
        return "ground_frame_id must not be empty (an empty frame on /lanes means no camera model)"
    return None


def unknown_overrides(given: Iterable[str], known: Iterable[str]) -> list[tuple[str, str | None]]:
    """The overrides (``-p name:=value``, params-file entries) a node does not declare, sorted, each with
    the closest declared name or None. ROS ignores them without a word, so a typo (``image_topik``)
    ran on the default. (This node reads no ``qos_overrides.*`` either: its QoS are the documented ones.)"""
    known = sorted(known)
    return [(name, next(iter(difflib.get_close_matches(name, known, n=1)), None))
            for name in sorted(given) if name not in known]
