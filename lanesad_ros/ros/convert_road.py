"""RoadModel <-> lanesad_ros/LaneModel messages, and the ego lane's RViz markers.

The image and LaneArray conversions live in :mod:`lanesad_ros.ros.convert`; this module holds
the planner-facing model beside them (kept apart for size). Messages are read by field name
only, so :func:`lane_model_to_road_model` also takes ``rosbags``-deserialised messages; the
generated message types are imported inside the builders (they exist only after the message
build, see convert.py).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from lanesad_ros.lanes import LaneSlot
from lanesad_ros.road import (
    BoundaryEstimate,
    BoundaryFit,
    EgoLaneEstimate,
    Marking,
    MarkingColor,
    MarkingType,
    RoadModel,
)
from lanesad_ros.road.ego import INVALID

EGO_NAMESPACE = "ego_lane"
EGO_COLOR = (0.1, 0.9, 0.3)  # RGB of the measured ego lane in RViz; predicted: the same, paler


def _float(value: float) -> float:
    return float(value) if math.isfinite(value) else math.nan


def road_model_to_lane_model(model: RoadModel, header: Any, ground_frame_id: str, std_step_m: float = 5.0) -> Any:
    """RoadModel -> lanesad_ros/LaneModel with ``header`` (the image's) and ``ground_frame_id``.

    ``std_step_m``: spacing of each boundary's sampled lateral std (LaneBoundary.lateral_std_x).
    ``ground_frame_id``: "" when there is no camera model (LaneModel.msg); set also when nothing is seen
    (no boundaries, an invalid ego lane), so a planner can tell "no camera model" from "no lane now".
    """
    from lanesad_ros.msg import EgoLane, LaneBoundary, LaneModel

    out = LaneModel()
    out.header = header
    out.ground_frame_id = ground_frame_id
    for boundary in model.boundaries:
        msg = LaneBoundary()
        msg.slot = int(boundary.slot)
        msg.existence_probability = float(boundary.existence)
        fit = boundary.fit
        msg.c0, msg.c1, msg.c2, msg.c3 = (float(c) for c in fit.coef)
        msg.x_min, msg.x_max = float(fit.x_min), float(fit.x_max)
        msg.coefficient_covariance = np.asarray(fit.covariance, np.float64).reshape(16)
        xs, std = fit.std_samples(std_step_m)
        msg.lateral_std_x = xs.astype(np.float32).tolist()
        msg.lateral_std = std.astype(np.float32).tolist()
        msg.marking_type = int(boundary.marking.type)
        msg.marking_confidence = float(boundary.marking.type_confidence)
        msg.color = int(boundary.marking.color)
        msg.color_confidence = float(boundary.marking.color_confidence)
        out.boundaries.append(msg)
    ego, msg = model.ego, EgoLane()
    msg.valid = bool(ego.valid)
    if ego.valid:
        msg.predicted = bool(ego.predicted)
        msg.measurement_age = _float(ego.measurement_age)
        msg.lane_change = int(ego.lane_change)
        msg.lateral_offset, msg.heading_error = float(ego.lateral_offset), float(ego.heading_error)
        msg.curvature, msg.curvature_rate = float(ego.curvature), float(ego.curvature_rate)
        msg.lane_width = float(ego.lane_width)
        (msg.lateral_offset_variance, msg.heading_error_variance, msg.curvature_variance,
         msg.curvature_rate_variance, msg.lane_width_variance) = (float(v) for v in ego.variances)
        msg.covariance = np.asarray(ego.covariance, np.float64).reshape(25)
    out.ego_lane = msg
    return out


def lane_model_to_road_model(msg: Any) -> RoadModel:
    """LaneModel (rclpy or rosbags) -> RoadModel; unknown slot / type / colour values become UNKNOWN.

    The per-frame measurement details of a Marking (painted fraction, gaps) are not in the
    message and come back empty.
    """
    boundaries = []
    for b in msg.boundaries:
        fit = BoundaryFit(coef=np.array([b.c0, b.c1, b.c2, b.c3], np.float64),
                          covariance=np.asarray(b.coefficient_covariance, np.float64).reshape(4, 4),
                          x_min=float(b.x_min), x_max=float(b.x_max), pixel_std=math.nan, n_points=0)
        marking = Marking(MarkingType(b.marking_type) if b.marking_type in MarkingType._value2member_map_
                          else MarkingType.UNKNOWN, float(b.marking_confidence),
                          MarkingColor(b.color) if b.color in MarkingColor._value2member_map_ else MarkingColor.UNKNOWN,
                          float(b.color_confidence))
        slot = int(b.slot)
        boundaries.append(BoundaryEstimate(slot=LaneSlot(slot) if slot in LaneSlot._value2member_map_
                                           else LaneSlot.UNKNOWN, existence=float(b.existence_probability),
                                           fit=fit, marking=marking))
    e = msg.ego_lane
    if not e.valid:
        return RoadModel(boundaries=boundaries, ego=INVALID)
    ego = EgoLaneEstimate(valid=True, predicted=bool(e.predicted), measurement_age=float(e.measurement_age),
                          lane_change=int(e.lane_change), lateral_offset=float(e.lateral_offset),
                          heading_error=float(e.heading_error), curvature=float(e.curvature),
                          curvature_rate=float(e.curvature_rate), lane_width=float(e.lane_width),
                          covariance=np.asarray(e.covariance, np.float64).reshape(5, 5))
    return RoadModel(boundaries=boundaries, ego=ego)


def centre_line(ego: EgoLaneEstimate, x: np.ndarray) -> np.ndarray:
    """(N, 2) ground points (x, y) of the ego lane's centre line at distances ``x`` (EgoLane.msg's formula)."""
    x = np.asarray(x, np.float64)
    y = (-ego.lateral_offset - math.tan(ego.heading_error) * x + ego.curvature / 2 * x ** 2
         + ego.curvature_rate / 6 * x ** 3)
    return np.stack([x, y], axis=1)


def ego_lane_markers(model: RoadModel, header: Any, ground_frame_id: str, length_m: float = 30.0,
                     line_width: float = 0.1) -> list:
    """RViz markers of the ego lane (namespace ``ego_lane``): its centre line and both edges
    (width apart, across the centre line) as LINE_STRIPs from the vehicle to ``length_m`` ahead,
    and a text with offset, heading error, width; green when measured, pale when predicted.
    No markers for an invalid ego lane (a DELETEALL before them clears the old ones)."""
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker

    ego = model.ego
    if not ego.valid:
        return []
    alpha = 0.35 if ego.predicted else 0.9
    x = np.linspace(0.0, length_m, 31)
    centre = centre_line(ego, x)
    slope = -math.tan(ego.heading_error) + ego.curvature * x + ego.curvature_rate / 2 * x ** 2
    normal = np.stack([-slope, np.ones_like(slope)], axis=1) / np.sqrt(1 + slope ** 2)[:, None]
    lines = [centre, centre + normal * ego.lane_width / 2, centre - normal * ego.lane_width / 2]
    markers = []
    for i, line in enumerate(lines):
        marker = Marker()
        marker.header.stamp, marker.header.frame_id = header.stamp, ground_frame_id
        marker.ns, marker.id, marker.type, marker.action = EGO_NAMESPACE, i, Marker.LINE_STRIP, Marker.ADD
        marker.pose.orientation.w = 1.0
        marker.scale.x = float(line_width) * (1.0 if i else 0.6)
        marker.color = ColorRGBA(r=EGO_COLOR[0], g=EGO_COLOR[1], b=EGO_COLOR[2], a=alpha)
        marker.points = [Point(x=float(px), y=float(py), z=0.02) for px, py in line]
        markers.append(marker)
    text = Marker()
    text.header.stamp, text.header.frame_id = header.stamp, ground_frame_id
    text.ns, text.id, text.type, text.action = EGO_NAMESPACE, len(lines), Marker.TEXT_VIEW_FACING, Marker.ADD
    text.pose.position.x, text.pose.position.z, text.pose.orientation.w = 3.0, 1.5, 1.0
    text.scale.z = 0.4
    text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=alpha)
    text.text = (f"offset {ego.lateral_offset:+.2f} m  heading {math.degrees(ego.heading_error):+.1f} deg  "
                 f"width {ego.lane_width:.2f} m" + ("  (predicted)" if ego.predicted else ""))
    markers.append(text)
    return markers
