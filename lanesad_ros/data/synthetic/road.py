"""A multi-lane road in world coordinates, with the ground truth a lane model is scored against.

World frame: REP 103 ground plane (x east, y north, metres; ``odom``-like). The road's
reference line is built from segments whose curvature varies linearly with arc length
(straights, circular arcs and clothoids, as highways are laid out; AASHTO, *A Policy on
Geometric Design of Highways and Streets*, ch. 3), integrated on a fine grid. Lane boundaries
are parallel curves at fixed lateral offsets ``d`` (positive left) of the reference line;
the curvature of a parallel curve is ``k / (1 - k d)``.

Vehicle frame: REP 103 ``base_link`` (x forward, y left) at the pose given, which the
closed-loop simulation puts at the rear axle. Angles in radians, curvature in 1/m (positive:
the road turns left).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lanesad_ros.lanes import LaneSlot


@dataclass(frozen=True)
class Segment:
    """A piece of reference line: ``length_m`` long, curvature going linearly from ``k_start``
    to ``k_end`` (1/m). Equal values: an arc (0: a straight); different: a clothoid."""

    length_m: float
    k_start: float = 0.0
    k_end: float | None = None

    def __post_init__(self) -> None:
        if not self.length_m > 0:
            raise ValueError(f"road segment length_m must be > 0, got {self.length_m}")


@dataclass(frozen=True)
class Marking:
    """How one lane boundary is painted. ``kind``: solid | dashed; ``colour``: white | yellow;
    dashed lines repeat ``dash_m`` of paint then ``gap_m`` of road along the reference line
    (US Interstate: 10 ft / 30 ft, about 3 m / 9 m; MUTCD sec. 3A.06)."""

    kind: str = "dashed"
    colour: str = "white"
    width_m: float = 0.15
    dash_m: float = 3.0
    gap_m: float = 9.0

    def __post_init__(self) -> None:
        if self.kind not in ("solid", "dashed"):
            raise ValueError(f"marking kind must be solid or dashed, got {self.kind!r}")
        if self.colour not in ("white", "yellow"):
            raise ValueError(f"marking colour must be white or yellow, got {self.colour!r}")
        if not (self.width_m > 0 and self.dash_m > 0 and self.gap_m > 0):
            raise ValueError("marking width_m, dash_m and gap_m must be > 0")


@dataclass(frozen=True)
class Pose:
    """Vehicle pose in the world frame: position (m) and heading (rad, from +x, counter-clockwise)."""

    x: float
    y: float
    heading: float

    def to_vehicle(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) world points -> (N, 2) vehicle-frame points (x forward, y left)."""
        c, s = math.cos(self.heading), math.sin(self.heading)
        d = np.asarray(points, np.float64).reshape(-1, 2) - (self.x, self.y)
        return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


@dataclass
class EgoLaneTruth:
    """The ego lane at the vehicle origin, exactly.

    ``lane_index``: 0 = leftmost lane. ``lateral_offset_m``: the vehicle's distance from the
    lane centre, positive when it is left of the centre. ``heading_error_rad``: vehicle heading
    minus the lane's direction, positive when the vehicle points left of the lane.
    ``curvature``: of the lane centre line at the vehicle (1/m, positive left turn).
    ``width_m``: between the lane's two boundary centres. ``s_m``: station on the reference line.
    """

    lane_index: int
    lateral_offset_m: float
    heading_error_rad: float
    curvature: float
    width_m: float
    s_m: float


@dataclass
class BoundaryTruth:
    """One painted boundary as the vehicle sees it: ``points`` (N, 2) vehicle-frame metres along
    the boundary, nearest first, at x = ``x_min``, ``x_min + step``, ... ``x_max`` ahead;
    ``slot`` relative to the ego lane (LaneSlot; UNKNOWN beyond the two neighbours); ``index``
    counted from the leftmost boundary."""

    index: int
    slot: LaneSlot
    marking: Marking
    points: np.ndarray
    cubic: np.ndarray = field(default_factory=lambda: np.zeros(4))  # y = c0 + c1 x + c2 x^2 + c3 x^3

    def y_at(self, x: np.ndarray) -> np.ndarray:
        """Lateral position (m, vehicle frame) of the boundary at forward distances ``x``; NaN outside its points."""
        x = np.asarray(x, np.float64)
        if len(self.points) < 2:
            return np.full(x.shape, np.nan)
        return np.interp(x, self.points[:, 0], self.points[:, 1], left=np.nan, right=np.nan)


class Road:
    """A road of ``lanes`` lanes of ``lane_width_m``, reference line from ``segments``.

    The reference line starts at the world origin heading along +x; it is the centre line of
    the road (boundary ``j`` of ``lanes + 1``, counted from the left, lies at
    ``d = (lanes / 2 - j) * lane_width_m``). ``markings``: one per boundary, left to right
    (default: solid yellow left edge, dashed white between lanes, solid white right edge, as
    on a US divided highway). ``ds``: integration / sampling step (m).
    """

    def __init__(self, segments: Sequence[Segment], lanes: int = 3, lane_width_m: float = 3.6,
                 markings: Sequence[Marking] | None = None, shoulder_m: float = 2.5, ds: float = 0.25):
        if not segments:
            raise ValueError("a road needs at least one segment")
        if lanes < 1:
            raise ValueError(f"a road needs at least one lane, got {lanes}")
        if not lane_width_m > 0:
            raise ValueError(f"lane_width_m must be > 0, got {lane_width_m}")
        self.segments = tuple(segments)
        self.lanes, self.lane_width_m, self.shoulder_m, self.ds = int(lanes), float(lane_width_m), shoulder_m, ds
        if markings is None:
            markings = ([Marking("solid", "yellow")] + [Marking("dashed", "white")] * (lanes - 1)
                        + [Marking("solid", "white")])
        if len(markings) != lanes + 1:
            raise ValueError(f"a road of {lanes} lanes has {lanes + 1} boundaries, got {len(markings)} markings")
        self.markings = tuple(markings)
        self._build()

    def _build(self) -> None:
        s_edges = [0.0]
        for seg in self.segments:
            s_edges.append(s_edges[-1] + seg.length_m)
        self.length_m = s_edges[-1]
        n = int(math.ceil(self.length_m / self.ds)) + 1
        self.s = np.linspace(0.0, self.length_m, n)
        # Curvature k(s) is piecewise linear: the heading is its exact integral (quadratic per piece).
        knots_s, knots_k = [], []
        for seg, s0, s1 in zip(self.segments, s_edges[:-1], s_edges[1:], strict=True):
            knots_s += [s0, s1]
            knots_k += [seg.k_start, seg.k_start if seg.k_end is None else seg.k_end]
        self._knots = (np.array(knots_s), np.array(knots_k))
        ks = self._k_at(self.s)
        mid = 0.5 * (self.s[1:] + self.s[:-1])
        step = np.diff(self.s)
        k_mid = self._k_at(mid)
        # Simpson on each step: heading at the step ends and its middle, exact for linear k.
        dtheta = step / 6.0 * (ks[:-1] + 4.0 * k_mid + ks[1:])
        self.theta = np.concatenate([[0.0], np.cumsum(dtheta)])
        theta_mid = self.theta[:-1] + step / 2.0 * (ks[:-1] + k_mid) / 2.0
        # Position: Simpson on cos/sin of the heading (error ~ ds^5 k^4 per step).
        cx = step / 6.0 * (np.cos(self.theta[:-1]) + 4.0 * np.cos(theta_mid) + np.cos(self.theta[1:]))
        cy = step / 6.0 * (np.sin(self.theta[:-1]) + 4.0 * np.sin(theta_mid) + np.sin(self.theta[1:]))
        self.xy = np.stack([np.concatenate([[0.0], np.cumsum(cx)]), np.concatenate([[0.0], np.cumsum(cy)])], 1)
        self.k = ks

    def _k_at(self, s: np.ndarray) -> np.ndarray:
        """Curvature of the reference line at stations ``s`` (piecewise linear; jumps between segments)."""
        knots_s, knots_k = self._knots
        s = np.asarray(s, np.float64)
        seg = np.clip(np.searchsorted(knots_s[1::2], s, side="right"), 0, len(self.segments) - 1)
        s0, s1 = knots_s[2 * seg], knots_s[2 * seg + 1]
        k0, k1 = knots_k[2 * seg], knots_k[2 * seg + 1]
        t = np.clip((s - s0) / np.maximum(s1 - s0, 1e-12), 0.0, 1.0)
        return k0 + t * (k1 - k0)

    # --- layout
    def boundary_offset(self, j: int) -> float:
        """Lateral offset (m, positive left of the reference line) of boundary ``j`` (0 = leftmost)."""
        return (self.lanes / 2.0 - j) * self.lane_width_m

    def lane_centre_offset(self, lane: int) -> float:
        return (self.lanes / 2.0 - lane - 0.5) * self.lane_width_m

    @property
    def min_radius_m(self) -> float:
        """Smallest radius of any lane centre line (inf for a straight road)."""
        k = float(np.max(np.abs(self.k)))
        if k == 0:
            return math.inf
        d_max = max(abs(self.lane_centre_offset(i)) for i in range(self.lanes))
        return 1.0 / k - d_max

    # --- sampling
    def heading_at(self, s) -> np.ndarray:
        return np.interp(s, self.s, self.theta)

    def curvature_at(self, s, d: float = 0.0) -> np.ndarray:
        """Curvature (1/m) of the curve at lateral offset ``d`` at stations ``s``."""
        k = self._k_at(s)
        return k / (1.0 - k * d)

    def points(self, s, d) -> np.ndarray:
        """World (N, 2) points at stations ``s`` and lateral offsets ``d`` (broadcast)."""
        s = np.asarray(s, np.float64)
        theta = np.interp(s, self.s, self.theta)
        x = np.interp(s, self.s, self.xy[:, 0])
        y = np.interp(s, self.s, self.xy[:, 1])
        d = np.broadcast_to(np.asarray(d, np.float64), s.shape)
        return np.stack([x - d * np.sin(theta), y + d * np.cos(theta)], axis=-1).reshape(-1, 2)

    def pose_at(self, s: float, d: float = 0.0, heading_offset: float = 0.0) -> Pose:
        """The pose ``d`` metres left of the reference line at station ``s``, heading along the road (+ offset)."""
        x, y = self.points(np.array([s]), d)[0]
        return Pose(float(x), float(y), float(self.heading_at(s)) + heading_offset)

    def project(self, x: float, y: float, s_hint: float | None = None, window_m: float = 60.0) -> tuple[float, float]:
        """World point -> (station s, lateral offset d) of its foot on the reference line.

        With ``s_hint`` only stations within ``window_m`` of it are searched (a moving vehicle:
        fast, and never the wrong branch of a road that comes back near itself).
        """
        if s_hint is None:
            lo, hi = 0, len(self.s)
        else:
            lo = max(int((s_hint - window_m) / self.ds), 0)
            hi = min(int((s_hint + window_m) / self.ds) + 2, len(self.s))
        d2 = np.sum((self.xy[lo:hi] - (x, y)) ** 2, axis=1)
        i = lo + int(np.argmin(d2))
        best = None
        for a in (i - 1, i):  # refine on the two grid steps around the nearest sample
            if a < 0 or a + 1 >= len(self.s):
                continue
            p0, p1 = self.xy[a], self.xy[a + 1]
            seg = p1 - p0
            t = float(np.clip(np.dot((x, y) - p0, seg) / np.dot(seg, seg), 0.0, 1.0))
            foot = p0 + t * seg
            dist = float(np.hypot(*(np.array((x, y)) - foot)))
            if best is None or dist < best[0]:
                best = (dist, self.s[a] + t * (self.s[a + 1] - self.s[a]))
        s = best[1] if best is not None else float(self.s[i])
        theta = float(np.interp(s, self.s, self.theta))
        foot = self.points(np.array([s]), 0.0)[0]
        d = -math.sin(theta) * (x - foot[0]) + math.cos(theta) * (y - foot[1])
        return float(s), float(d)

    # --- ground truth
    def ego_lane(self, pose: Pose, s_hint: float | None = None) -> EgoLaneTruth:
        """The lane the vehicle origin is in (the nearest, when it is off the road), exactly."""
        s, d = self.project(pose.x, pose.y, s_hint)
        lane = int(np.clip(math.floor(self.lanes / 2.0 - d / self.lane_width_m), 0, self.lanes - 1))
        centre = self.lane_centre_offset(lane)
        heading_error = (pose.heading - float(self.heading_at(s)) + math.pi) % (2 * math.pi) - math.pi
        return EgoLaneTruth(lane_index=lane, lateral_offset_m=d - centre, heading_error_rad=heading_error,
                            curvature=float(self.curvature_at(s, centre)), width_m=self.lane_width_m, s_m=s)

    def boundaries(self, pose: Pose, x_min: float = 0.0, x_max: float = 60.0, ego: EgoLaneTruth | None = None,
                   step_m: float = 0.5, fit_x_max: float = 30.0) -> list[BoundaryTruth]:
        """Every boundary as the vehicle at ``pose`` sees it, ``x_min``..``x_max`` metres ahead.

        ``cubic``: a least-squares cubic y(x) of each boundary's points over ``x_min``..``fit_x_max``
        (what a lane model reports; the points themselves are exact).
        """
        ego = ego if ego is not None else self.ego_lane(pose)
        s_rel = np.arange(x_min - 5.0, x_max * 1.2 + 5.0, 0.25)
        s = ego.s_m + s_rel
        s = s[(s >= 0) & (s <= self.length_m)]
        out = []
        for j, marking in enumerate(self.markings):
            dense = pose.to_vehicle(self.points(s, self.boundary_offset(j)))
            # On a uniform x grid (the boundary runs forward: x grows along it), from the dense samples.
            x = np.arange(x_min, x_max + 1e-9, step_m)
            x = x[(x >= dense[0, 0]) & (x <= dense[-1, 0])]
            pts = np.column_stack([x, np.interp(x, dense[:, 0], dense[:, 1])])
            rel = j - ego.lane_index  # 0: left boundary of the ego lane, 1: its right boundary
            slot = {-1: LaneSlot.LEFT_LEFT, 0: LaneSlot.LEFT, 1: LaneSlot.RIGHT, 2: LaneSlot.RIGHT_RIGHT}.get(
                rel, LaneSlot.UNKNOWN)
            near = pts[pts[:, 0] <= fit_x_max]
            cubic = np.polyfit(near[:, 0], near[:, 1], 3)[::-1] if len(near) >= 4 else np.full(4, np.nan)
            out.append(BoundaryTruth(index=j, slot=slot, marking=marking, points=pts, cubic=cubic))
        return out


def highway_course(length_m: float = 1500.0, min_radius_m: float = 250.0, lanes: int = 3,
                   lane_width_m: float = 3.6, markings: Sequence[Marking] | None = None) -> Road:
    """A test course of curves both ways joined by clothoids and straights, ``length_m`` long.

    The sharpest curve has radius ``min_radius_m`` at the lane centre farthest inside it;
    the others 1.5x and 2.5x that. Clothoids of 80 m (a 20 m/s car turns in over 4 s).
    """
    if not min_radius_m > lanes * lane_width_m:
        raise ValueError(f"min_radius_m must exceed the road width, got {min_radius_m}")
    # Radius of the reference line so that the innermost lane centre has min_radius_m.
    inner = (lanes - 1) / 2.0 * lane_width_m
    r = min_radius_m + inner
    pattern = [(100.0, 0.0, 0.0), (80.0, 0.0, 1 / r), (200.0, 1 / r, 1 / r), (80.0, 1 / r, 0.0),
               (60.0, 0.0, 0.0), (80.0, 0.0, -1 / (1.5 * r)), (250.0, -1 / (1.5 * r), -1 / (1.5 * r)),
               (80.0, -1 / (1.5 * r), 0.0), (40.0, 0.0, 0.0), (80.0, 0.0, -1 / r), (150.0, -1 / r, -1 / r),
               (80.0, -1 / r, 0.0), (80.0, 0.0, 1 / (2.5 * r)), (200.0, 1 / (2.5 * r), 1 / (2.5 * r)),
               (80.0, 1 / (2.5 * r), 0.0)]
    segments, total, i = [], 0.0, 0
    while total < length_m:
        length, k0, k1 = pattern[i % len(pattern)]
        segments.append(Segment(length, k0, k1))
        total += length
        i += 1
    return Road(segments, lanes=lanes, lane_width_m=lane_width_m, markings=markings)
