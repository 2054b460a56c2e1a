"""LaneModel messages: every field of the road model round-trips; the ego lane's RViz markers;
LaneArray is unchanged (old consumers keep their type)."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("lanesad_ros.msg", reason="generated lanesad_ros.msg types not on the path (run the msg build)")

from builtin_interfaces.msg import Time  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lanesad_ros.lanes import LaneSlot  # noqa: E402
from lanesad_ros.road import (  # noqa: E402
    BoundaryEstimate,
    BoundaryFit,
    EgoLaneEstimate,
    Marking,
    MarkingColor,
    MarkingType,
    RoadModel,
)
from lanesad_ros.ros.convert_road import (  # noqa: E402
    EGO_NAMESPACE,
    centre_line,
    ego_lane_markers,
    lane_model_to_road_model,
    road_model_to_lane_model,
)


def sample_model(valid: bool = True) -> RoadModel:
    rng = np.random.default_rng(0)
    boundaries = []
    for slot, c0, kind, colour in ((LaneSlot.LEFT, 1.7, MarkingType.SOLID, MarkingColor.YELLOW),
                                   (LaneSlot.RIGHT, -1.9, MarkingType.DASHED, MarkingColor.WHITE),
                                   (LaneSlot.RIGHT_RIGHT, -5.5, MarkingType.DOUBLE, MarkingColor.UNKNOWN)):
        a = rng.normal(size=(4, 4)) * np.array([0.03, 3e-3, 1e-4, 1e-6])
        fit = BoundaryFit(coef=np.array([c0, 0.01, -2e-3, 1e-5]), covariance=a @ a.T, x_min=5.5, x_max=47.0,
                          pixel_std=1.5, n_points=40)
        boundaries.append(BoundaryEstimate(slot=slot, existence=0.87, fit=fit,
                                           marking=Marking(kind, 0.8, colour, 0.6)))
    b = rng.normal(size=(5, 5)) * 0.01
    ego = EgoLaneEstimate(valid=True, predicted=True, measurement_age=0.12, lane_change=-1, lateral_offset=0.25,
                          heading_error=math.radians(-1.5), curvature=1 / 400, curvature_rate=-1e-5,
                          lane_width=3.62, covariance=b @ b.T) if valid else EgoLaneEstimate(valid=False)
    return RoadModel(boundaries=boundaries, ego=ego)


def header() -> Header:
    return Header(stamp=Time(sec=12, nanosec=345), frame_id="camera_optical")


def test_every_field_round_trips():
    from lanesad_ros.msg import LaneBoundary, LaneModel

    model = sample_model()
    msg = road_model_to_lane_model(model, header(), "base_link")
    assert isinstance(msg, LaneModel)
    assert msg.header.frame_id == "camera_optical" and msg.header.stamp.nanosec == 345
    assert msg.ground_frame_id == "base_link"
    first = msg.boundaries[0]
    assert first.slot == LaneBoundary.LEFT and first.marking_type == LaneBoundary.MARKING_SOLID
    assert first.color == LaneBoundary.COLOR_YELLOW
    assert msg.boundaries[2].marking_type == LaneBoundary.MARKING_DOUBLE
    assert msg.boundaries[2].color == LaneBoundary.COLOR_UNKNOWN
    xs, std = model.boundaries[0].fit.std_samples(5.0)
    np.testing.assert_allclose(first.lateral_std_x, xs, rtol=1e-6)
    np.testing.assert_allclose(first.lateral_std, std, rtol=1e-5)
    back = lane_model_to_road_model(msg)
    for got, sent in zip(back.boundaries, model.boundaries, strict=True):
        assert (got.slot, got.marking.type, got.marking.color) == (sent.slot, sent.marking.type, sent.marking.color)
        assert got.existence == pytest.approx(sent.existence) and got.marking.type_confidence == pytest.approx(0.8)
        np.testing.assert_allclose(got.fit.coef, sent.fit.coef)
        np.testing.assert_allclose(got.fit.covariance, sent.fit.covariance)
        assert (got.fit.x_min, got.fit.x_max) == pytest.approx((sent.fit.x_min, sent.fit.x_max))
    got, sent = back.ego, model.ego
    assert got.valid and got.predicted and got.lane_change == -1
    for name in ("measurement_age", "lateral_offset", "heading_error", "curvature", "curvature_rate", "lane_width"):
        assert getattr(got, name) == pytest.approx(getattr(sent, name), rel=1e-6), name
    np.testing.assert_allclose(got.covariance, sent.covariance)
    e = msg.ego_lane  # the variance fields are the covariance's diagonal
    variances = [e.lateral_offset_variance, e.heading_error_variance, e.curvature_variance,
                 e.curvature_rate_variance, e.lane_width_variance]
    np.testing.assert_allclose(variances, np.diag(sent.covariance), rtol=1e-6)


def test_an_empty_model_keeps_its_frame_and_says_nothing_is_seen():
    """A planner's case: the camera model is known and nothing is seen; the frame stays (it was '' and read as
    'no camera model'), no boundaries, an invalid ego lane. Without a camera model the node passes ''."""
    msg = road_model_to_lane_model(RoadModel(), header(), "base_link")
    assert msg.ground_frame_id == "base_link" and len(msg.boundaries) == 0 and not msg.ego_lane.valid
    assert not lane_model_to_road_model(msg).ego.valid
    assert road_model_to_lane_model(RoadModel(), header(), "").ground_frame_id == ""


def test_rosbags_reads_the_messages_too(tmp_path):
    """The bag tools' type store knows LaneModel: a serialised message reads back as the same model."""
    pytest.importorskip("rosbags.typesys")
    from rclpy.serialization import serialize_message

    from lanesad_ros.ros.bag.typestore import typestore

    store = typestore()
    data = serialize_message(road_model_to_lane_model(sample_model(), header(), "base_link"))
    back = lane_model_to_road_model(store.deserialize_cdr(data, "lanesad_ros/msg/LaneModel"))
    assert back.ego.lane_change == -1 and [b.slot for b in back.boundaries][0] == LaneSlot.LEFT


def test_ego_markers_follow_the_documented_centre_line():
    from visualization_msgs.msg import Marker

    model = sample_model()
    markers = ego_lane_markers(model, header(), "base_link")
    assert [m.type for m in markers] == [Marker.LINE_STRIP] * 3 + [Marker.TEXT_VIEW_FACING]
    assert all(m.ns == EGO_NAMESPACE and m.header.frame_id == "base_link" for m in markers)
    centre = np.array([(p.x, p.y) for p in markers[0].points])
    ego = model.ego
    assert centre[0, 1] == pytest.approx(-ego.lateral_offset)  # vehicle left of centre: centre line to its right
    np.testing.assert_allclose(centre, centre_line(ego, centre[:, 0]))
    left, right = (np.array([(p.x, p.y) for p in m.points]) for m in markers[1:3])
    assert np.linalg.norm(left[0] - right[0]) == pytest.approx(ego.lane_width, rel=1e-6)
    assert markers[0].color.a < 0.5, "predicted: drawn pale"
    assert "offset +0.25 m" in markers[3].text and "(predicted)" in markers[3].text
    assert ego_lane_markers(sample_model(valid=False), header(), "base_link") == []


def test_lane_array_is_unchanged_for_old_consumers():
    """Adding fields to Lane/LaneArray would change their type hash: the planner model is beside them."""
    from lanesad_ros.msg import Lane, LaneArray

    assert set(LaneArray.get_fields_and_field_types()) == {
        "header", "image_width", "image_height", "ground_frame_id", "model_name", "weights_name",
        "inference_latency_ms", "lanes"}
    assert set(Lane.get_fields_and_field_types()) == {"slot", "confidence", "image_points", "ground_points"}
