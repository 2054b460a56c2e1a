"""Planner-ready lanes: boundaries on the ground with their uncertainty, marking type and colour,
and the ego lane filtered over time (pure numpy/OpenCV, no ROS).

Frames: REP 103 ground frame (x forward, y left, z up, metres), the road taken as flat. Run
``RoadModelStage.update`` after the Detector, once per frame; ``ros/convert.py`` turns its
``RoadModel`` into a lanesad_ros/LaneModel message.
"""
from lanesad_ros.road.boundary import BoundaryFit, BoundaryFitConfig, fit_boundary
from lanesad_ros.road.ego import EgoLaneConfig, EgoLaneEstimate, EgoLaneFilter
from lanesad_ros.road.marking import Marking, MarkingColor, MarkingConfig, MarkingType, measure_marking
from lanesad_ros.road.model import BoundaryEstimate, RoadModel, RoadModelStage
from lanesad_ros.road.motion import Motion, OdometryGate

__all__ = ["BoundaryEstimate", "BoundaryFit", "BoundaryFitConfig", "EgoLaneConfig", "EgoLaneEstimate",
           "EgoLaneFilter", "Marking", "MarkingColor", "MarkingConfig", "MarkingType", "Motion", "OdometryGate",
           "RoadModel", "RoadModelStage", "fit_boundary", "measure_marking"]
