"""Lanes on the ground: where a camera model is known, one frame's lanes must look like lane
boundaries on the road plane, not only in the image.

The image rules (``convergence``, ``slots``) hold for any camera; with a camera model the
lanes can be projected onto the road (``GroundProjector.image_to_ground``, REP 103: x forward,
y left, metres) and judged in metres, where lane boundaries are nearly parallel lines a lane
width apart (the premise of ground lane models, e.g. Dickmanns & Mysliwetz 1992). Three rules:

1. **Direction** (``MAX_SPREAD_DEG``, ``PITCH_TOLERANCE_DEG``, ``MAX_HEADING_DEG``): each lane's
   near-field heading is the median direction of the vectors between pairs of its ground points
   (Theil-Sen for a direction) over its nearest ``NEAR_LENGTH_M`` metres (within ``MAX_RANGE_M``
   of the camera: farther, a pixel or a pitch error moves a point metres). The frame's heading is
   chosen by consensus among the lanes' headings (the heading most lanes lie within their
   tolerance of, then the most summed confidence, as ``convergence.converging`` chooses its
   vanishing point) and must lie within ``MAX_HEADING_DEG`` of the vehicle's heading (a lane seen
   alone is compared with the vehicle's only). A lane's tolerance is ``MAX_SPREAD_DEG`` plus what
   a pitch error turns a lane that far to the side by (:func:`heading_tolerance`). Lanes outside
   the consensus are dropped: a kerb or stop line across the view, a line on a vehicle (a
   vertical edge projects onto the road as a ray from the camera), a line that branches off.
2. **Side** (``SIDE_MARGIN_M``, ``SIDE_RANGE_M``): LEFT / LEFT_LEFT lie left of the camera at
   their nearest point, RIGHT / RIGHT_RIGHT right of it (the slot rule's divide, ``slots.py``).
3. **Spacing** (``LANE_SPACING_M``): lanes of adjacent slots (LEFT_LEFT-LEFT, LEFT-RIGHT,
   RIGHT-RIGHT_RIGHT) whose common stretch starts within :func:`spacing_reach` are a lane width
   apart somewhere along it (lines that meet at an exit's gore pass) and not wider all along
   it. When a pair is implausible the lower-confidence lane is dropped.

Lanes with fewer than ``MIN_POINTS`` ground points within ``MAX_RANGE_M`` spanning
``MIN_LENGTH_M`` (far stubs, points above the horizon) are not judged. Bounds come from the real
label geometry measured by ``test_ground_check.py`` (TuSimple: the 3,626 training labels through
a 1000 px pinhole camera 1.5 m high pitched to the labels' median vanishing row; CULane: the 120
frames through a camera estimated from their labels the same way); with them no labelled lane
of either dataset is dropped. The numbers are under each constant.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lanesad_ros.camera import GroundProjector
from lanesad_ros.lanes import Lane, LaneSlot

# Near field: a lane's points within this many metres (forward) of its nearest one ...
NEAR_LENGTH_M = 25.0
# ... and within this distance of the camera: farther, a pixel moves a point metres.
MAX_RANGE_M = 50.0
# Fewer points, or a shorter near field, and a lane is not judged (9 of 13,795 TuSimple lanes).
MIN_POINTS = 3
MIN_LENGTH_M = 2.0
# Point pairs closer than this do not vote for a lane's heading (label points are ~0.3 m apart near the car).
MIN_PAIR_M = 1.0
# Largest heading difference from the frame's for a lane under the camera: lanes at a highway exit
# diverge up to 12.2 degrees (TuSimple clip 0313-2/330, the ego lane's right boundary 2.4 m to the
# side); with the pitch term below no TuSimple lane comes nearer than 3.5 degrees to its bound
# (CULane 12.3). A lane diverging 20 degrees near the car is over it.
MAX_SPREAD_DEG = 14.0
# Pitch error the heading tolerance allows for (see heading_tolerance): the TuSimple frames' own
# pitch (vanishing point of the ego pair) lies within 1.5 degrees of their median in 98 % of
# frames (5.75-8.47 deg, 1st-99th percentile, median 6.92): a fixed calibration sees that much.
PITCH_TOLERANCE_DEG = 1.5
# Camera height for projectors given by a homography (no mounting): a car's windscreen.
DEFAULT_HEIGHT_M = 1.5
# Farthest the frame's heading may be from the vehicle's: the largest labelled lane heading is
# 18.5 degrees (TuSimple; CULane 4.8): curves, lane changes and the camera's yaw.
MAX_HEADING_DEG = 30.0
# How far a LEFT lane may lie right of the camera (RIGHT left of it): labels reach 0.15 m (CULane;
# TuSimple 0.05 m): the slot rule's divide is the camera column at the bottom row, which a yawed
# camera and the rule's linear extension move by decimetres; a lane change puts a line under the car.
SIDE_MARGIN_M = 0.5
# Only lanes seen this near are asked their side: farther, a lane's slot came from extending it
# linearly to the bottom row (TuSimple 0313-2/255: a stub 25 m ahead, 3.7 m right, labelled LEFT).
SIDE_RANGE_M = 10.0
# Adjacent lanes are this far apart somewhere along their common stretch (the lower bound) and
# not farther all along it (the upper). Lanes are 2.5-5 m wide in US, EU and Chinese standards
# (AASHTO: 2.7-3.6 m; EU motorways 3.5-3.75 m; China 3.5-3.75 m): the lower bound is half the
# narrowest, for camera-height and pitch errors, and still above a doubled line or a kerb beside
# the edge line (< 1 m); labels come to 1.8 m (CULane, the 1.5 m height assumed; TuSimple 2.0 m).
# The upper bound is two of the widest: a line missed between two lanes, a shoulder; labels reach
# 8.8 m (TuSimple RIGHT_RIGHT to RIGHT; CULane 7.4 m).
LANE_SPACING_M = (1.25, 10.0)
EXTEND_M = 10.0

_LEFT_SLOTS = (int(LaneSlot.LEFT_LEFT), int(LaneSlot.LEFT))
_RIGHT_SLOTS = (int(LaneSlot.RIGHT), int(LaneSlot.RIGHT_RIGHT))


@dataclass
class GroundVerdict:
    """What :func:`check_on_ground` says about one frame's n lanes.

    ``keep`` (n,) bool; ``reasons`` (n,) why a lane is dropped ("" when kept); ``heading_deg``
    (n,) near-field heading (degrees, + turning left; NaN where not judged); ``offset_m`` (n,)
    lateral position (m, + left) of the near-field line at the lane's nearest point;
    ``near_m`` / ``far_m`` (n,) forward distance from the camera of its nearest / farthest
    near-field point; ``frame_heading_deg``: the consensus heading (NaN with no judged lane);
    ``ground``: per lane the (N, 3) road points of its image points, as
    ``GroundProjector.image_to_ground(points, keep_all=True)`` gives them (NaN rows off the road),
    so a caller attaching ground points need not project again.
    """

    keep: np.ndarray
    reasons: list[str]
    heading_deg: np.ndarray
    offset_m: np.ndarray
    near_m: np.ndarray
    far_m: np.ndarray
    frame_heading_deg: float
    ground: list[np.ndarray]


def _wrap_deg(a: np.ndarray) -> np.ndarray:
    return (np.asarray(a) + 180.0) % 360.0 - 180.0


def near_field_line(ground: np.ndarray) -> tuple[float, float, float, float] | None:
    """Robust line through one lane's near field: ``ground`` (N, 2) x, y metres relative to the
    camera, in the lane's order (nearest first, NaN rows allowed) -> (heading degrees, y at the
    nearest point, nearest x, farthest x used), or None when too few points to judge."""
    g = ground[np.all(np.isfinite(ground), axis=1)]
    g = g[g[:, 0] <= MAX_RANGE_M]
    if len(g) < MIN_POINTS:
        return None
    near = g[:, 0].min()
    g = g[g[:, 0] <= near + NEAR_LENGTH_M]
    if len(g) < MIN_POINTS or np.hypot(*(g.max(axis=0) - g.min(axis=0))) < MIN_LENGTH_M:
        return None
    i, j = np.triu_indices(len(g), 1)
    d = g[j] - g[i]
    far_enough = np.hypot(d[:, 0], d[:, 1]) >= MIN_PAIR_M
    if not far_enough.any():
        return None
    heading = float(np.median(np.arctan2(d[far_enough, 1], d[far_enough, 0])))
    if abs(heading) >= np.radians(80.0):  # across the view: no lateral offset to speak of
        return float(np.degrees(heading)), float("nan"), float(near), float(g[:, 0].max())
    offset = float(np.median(g[:, 1] - (g[:, 0] - near) * np.tan(heading)))
    return float(np.degrees(heading)), offset, float(near), float(g[:, 0].max())


def check_on_ground(lanes: Sequence[Lane], projector: GroundProjector) -> GroundVerdict:
    """Which of one frame's ``lanes`` (image points in the projector's source pixels, slots,
    confidences) are plausible lane boundaries on the road; the rules of the module docstring.

    Cost: one projection of all lanes' points together plus a pairwise median per lane.
    """
    n = len(lanes)
    keep = np.ones(n, dtype=bool)
    reasons = [""] * n
    heading, offset, near, far = (np.full(n, np.nan) for _ in range(4))
    if n == 0:
        return GroundVerdict(keep, reasons, heading, offset, near, far, float("nan"), [])
    counts = [len(lane.image_points) for lane in lanes]
    ground = np.split(projector.image_to_ground(np.concatenate([lane.image_points for lane in lanes]),
                                                keep_all=True), np.cumsum(counts)[:-1])
    mounting = projector.mounting
    origin = mounting.position()[:2] if mounting is not None else np.zeros(2)
    for k, part in enumerate(ground):
        line = near_field_line(part[:, :2] - origin)
        if line is not None:
            heading[k], offset[k], near[k], far[k] = line
    confidence = np.array([lane.confidence for lane in lanes], dtype=np.float64)
    slots = np.array([int(lane.slot) for lane in lanes])
    height = mounting.height_m if mounting is not None else DEFAULT_HEIGHT_M
    frame_heading = _direction(heading, offset, confidence, height, keep, reasons)
    _side(slots, offset, near, keep, reasons)
    _spacing(slots, heading, offset, near, far, confidence, keep, reasons, spacing_reach(height))
    return GroundVerdict(keep, reasons, heading, offset, near, far, frame_heading, ground)


def heading_tolerance(offset_m: np.ndarray, height_m: float) -> np.ndarray:
    """Largest heading difference (degrees) from the frame's for lanes ``offset_m`` to the
    side: ``MAX_SPREAD_DEG`` plus what a pitch error of ``PITCH_TOLERANCE_DEG`` turns a lane
    that far to the side by on the ground (a lane at y seen with the pitch off by d lies at
    y (1 + x d / h): its heading turns by atan(|y| d / h)). NaN offsets count as 0."""
    turn = np.abs(np.nan_to_num(offset_m)) / height_m * np.tan(np.radians(PITCH_TOLERANCE_DEG))
    return MAX_SPREAD_DEG + np.degrees(np.arctan(turn))


def _direction(heading, offset, confidence, height, keep, reasons) -> float:
    """Rule 1 in place on ``keep`` / ``reasons``; returns the frame's heading (NaN: none)."""
    judged = np.isfinite(heading)
    tolerance = heading_tolerance(offset, height)
    frame_heading = _consensus(heading, confidence, tolerance)
    if np.isnan(frame_heading):
        off = judged
    else:
        off = judged & (np.abs(_wrap_deg(heading - frame_heading)) > tolerance)
    keep[off] = False
    for k in np.flatnonzero(off):
        reasons[k] = (f"heading {heading[k]:.0f} deg, the frame's {frame_heading:.0f} deg" if np.isfinite(frame_heading)
                      else f"heading {heading[k]:.0f} deg, over {MAX_HEADING_DEG:.0f} deg from the vehicle's")
    return frame_heading


def _side(slots, offset, near, keep, reasons) -> None:
    """Rule 2 in place, for lanes seen within ``SIDE_RANGE_M``."""
    for k in np.flatnonzero(keep & np.isfinite(offset) & (near <= SIDE_RANGE_M)):
        if slots[k] in _LEFT_SLOTS and offset[k] < -SIDE_MARGIN_M:
            keep[k], reasons[k] = False, f"{LaneSlot(slots[k]).name} {-offset[k]:.1f} m right of the camera"
        elif slots[k] in _RIGHT_SLOTS and offset[k] > SIDE_MARGIN_M:
            keep[k], reasons[k] = False, f"{LaneSlot(slots[k]).name} {offset[k]:.1f} m left of the camera"


def pair_spacing(heading, offset, near, far, a: int, b: int) -> tuple[float, float] | None:
    """Lateral spacing (m, + when lane ``a`` is left of ``b``) of two lanes' near-field lines at
    both ends of their common stretch of distance (the nearer end moved out to at most
    ``EXTEND_M`` beyond either lane when they do not overlap); None when they are farther apart."""
    start, end = max(near[a], near[b]), min(far[a], far[b])
    if start > end + EXTEND_M:
        return None
    ends = np.array([start, max(start, end)])
    ya = offset[a] + (ends - near[a]) * np.tan(np.radians(heading[a]))
    yb = offset[b] + (ends - near[b]) * np.tan(np.radians(heading[b]))
    return float(ya[0] - yb[0]), float(ya[1] - yb[1])


def spacing_reach(height_m: float) -> float:
    """Farthest distance (m) at which a pair's spacing is judged: where a pitch error of
    ``PITCH_TOLERANCE_DEG`` moves distances, and so spacings, by a third (x tan(d) / h = 1/3;
    19 m for a 1.5 m high camera)."""
    return height_m / (3.0 * np.tan(np.radians(PITCH_TOLERANCE_DEG)))


def _spacing(slots, heading, offset, near, far, confidence, keep, reasons, reach) -> None:
    """Rule 3 in place: adjacent slots whose common stretch starts within ``reach`` metres and
    that lie closer than a lane all along it, or wider, lose the lower-confidence lane."""
    by_slot = {int(s): k for k, s in enumerate(slots)
               if s != int(LaneSlot.UNKNOWN) and keep[k] and np.isfinite(offset[k])}
    for slot in range(int(LaneSlot.LEFT_LEFT), int(LaneSlot.RIGHT_RIGHT)):
        a, b = by_slot.get(slot), by_slot.get(slot + 1)
        if a is None or b is None or not (keep[a] and keep[b]):
            continue
        if max(near[a], near[b]) > reach:
            continue
        spacing = pair_spacing(heading, offset, near, far, a, b)
        if spacing is None:
            continue
        low, high = LANE_SPACING_M
        if max(spacing) < low or min(spacing) > high:
            weaker = a if confidence[a] < confidence[b] else b
            keep[weaker] = False
            other = LaneSlot(slots[b if weaker == a else a]).name
            reasons[weaker] = (f"{spacing[0]:.1f}-{spacing[1]:.1f} m from {other} "
                               f"(lanes are {low}-{high} m apart)")


def _consensus(heading: np.ndarray, confidence: np.ndarray, tolerance: np.ndarray) -> float:
    """The frame's heading (degrees) from the judged lanes' ``heading`` (NaN = not judged): of
    the lane headings within ``MAX_HEADING_DEG`` of the vehicle's, the one most lanes lie within
    their ``tolerance`` of, then with the most summed confidence, then nearest the vehicle's
    heading (as ``convergence.converging`` chooses its vanishing point); NaN when none is. A
    lane seen alone gives its own heading when within ``MAX_HEADING_DEG``."""
    judged = np.flatnonzero(np.isfinite(heading))
    candidates = judged[np.abs(heading[judged]) <= MAX_HEADING_DEG]
    if len(candidates) == 0:
        return float("nan")
    diff = np.abs(_wrap_deg(heading[judged][None, :] - heading[candidates][:, None]))
    support = diff <= tolerance[judged][None, :]
    count = support.sum(axis=1)
    strength = np.where(support, confidence[judged][None, :], 0.0).sum(axis=1)
    order = np.lexsort((-np.abs(heading[candidates]), strength, count))
    return float(heading[candidates[order[-1]]])
