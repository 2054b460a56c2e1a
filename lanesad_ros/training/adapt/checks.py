"""Pseudo-labels for adaptation: which of the teacher's lanes are trusted, and why.

A lane the base model (the teacher, on the clean frame) reports becomes a training label
only when it passes every check below; everything else the teacher saw is *ignored* in the
loss (neither lane nor background), so a doubtful lane is never taught either way.

Camera facts estimated from the drive itself (no calibration needed):

- **Static bottom region**: the car's hood and burnt-in overlays, from the frames alone
  (:func:`lanesad_ros.training.adapt.frames.static_bottom`). The teacher's points there are not
  trusted (the base model draws snakes over a hood it never saw); a lane that reaches the
  hood is continued straight (its near line) to the image bottom, as TuSimple and CULane
  label lanes, so the student learns neither snakes on the hood nor "no lanes at the
  bottom of the picture" (which would cost it lanes on cameras without a hood).
- **Vanishing point** (:func:`vanishing_point`): the median intersection of the near-field
  lines (``convergence.near_field_lines``) of confident left/right lane pairs over all frames.
  Lane boundaries are parallel on the road, so their image lines meet there. Until it is known
  the road's height is measured up to the **teacher's lane top** (:func:`teacher_top`, the 25th
  percentile of the top rows of its confident lanes: the higher ones), not to the image top:
  CULane's road ends at about row 400 of 590, and against the whole height the span rule asked
  for 46 % of the real road, so on the first 30 frames of clip 06030819_0755 24 lanes were "too
  short", too few pairs were left to find the vanishing point, and it stayed unknown for the
  whole drive.
- **Lane top** (:func:`lane_top`): how far up the drive's lanes are seen when nothing hides
  them, the ``LANE_TOP_PERCENTILE`` of the accepted labels' top rows. TuSimple and CULane
  label a lane through the vehicles that hide it; the teacher stops where a car ahead begins
  (city traffic: 15 of the 24 LEFT labels on the first 30 frames of CULane clip
  06030822_0756 ended at the car ahead and missed the labelled lane, CULane IoU < 0.5). A
  pseudo-label that ends lower is continued up to the lane top, straight towards the
  vanishing point, so the student is not taught that lanes end at cars.

The lane-shape rules are the decoder's own (one set of rules for decoding and labels), with
the bounds their modules document and measure:

- ``lanesad_ros.lanefit``: the label is the lane hyperbola (Kluge 1994) fitted robustly to the
  teacher's rows (``fit_lanes``, rows further than ``outlier_tol`` of the width are outliers),
  sampled between its highest and lowest inlier row, so it bends one way only: no S-curve, loop
  or curl (refits the 13,795 TuSimple training lanes with a median largest error of 0.4 px).
- ``lanesad_ros.convergence`` (bounds from the TuSimple and CULane label geometry, no labelled
  lane rejected): a lane is cut where it runs flatter than ``MAX_SLOPE`` (``trim_across``); it
  must point at the drive's vanishing point (``supports``: within ``MAX_VP_ANGLE``, seen at
  most ``MAX_ABOVE_VP`` above it), else it "misses the vanishing point" (a barrier top, a
  vehicle edge, a reflection); the frame's lanes must converge to one vanishing region
  (``converging``).
- ``lanesad_ros.slots``: lanes ordered by slot never cross (rule 1); by the labelling rule a
  lane's side of the camera column (the image centre) at the bottom row is its slot's side
  (rule 2; ``x_at_row``); an outer lane's spacing to its neighbour, as a ratio to the ego
  lane's width on the rows both are seen, lies within ``LEFT_LEFT_SPACING`` /
  ``RIGHT_RIGHT_SPACING`` (``spacing_ratio``, ``plausible_spacing``; TuSimple percentiles).

What only a pseudo-label needs (:class:`LaneRules`, adapt's own settings, not measured on
labels): the teacher is confident (``min_confidence``); the lane has ``min_points`` rows above
the hood spanning ``min_span`` of the road height; at least ``min_inliers`` of them fit the
hyperbola, with an RMS residual under ``rms_tol`` of the width; its bend (largest distance
from its chord) is under ``bend_tol`` of the width (stricter than the labels: 1,760 of the
13,795 TuSimple training lanes bend more by this measure); on the hood it follows
its near line within ``hood_tol`` (criteria only). Per lane :func:`check_lane`, per frame
:func:`check_frame`. On sequences (:func:`temporal_filter`): a lane must be found in the same
slot, within ``temporal_tol`` of the width, in a neighbouring frame; a lane that flickers is
not a label.

Thresholds are fractions of the image size, so they hold for any camera resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lanesad_ros.convergence import converging, near_field_lines, supports, trim_across
from lanesad_ros.lanefit import fit_lanes, horizon_grid, make_tables
from lanesad_ros.lanes import Lane, LaneSlot
from lanesad_ros.slots import LEFT_LEFT_SPACING, RIGHT_RIGHT_SPACING, plausible_spacing, spacing_ratio, x_at_row
from lanesad_ros.training.adapt.frames import static_bottom

LANE_TOP_PERCENTILE = 10  # of the accepted labels' top rows: where the drive's unhidden lanes end
TEACHER_TOP_PERCENTILE = 25  # of the teacher's confident lanes' top rows: the road's end until the VP is known
MAX_TEACHER_TOP = 0.8  # of the height: the lowest that road end may be
_GRID_ROWS = 91  # rows over the image height on which a frame's labels are compared (about their point spacing)


@dataclass(frozen=True)
class LaneRules:
    """Adapt's own thresholds of the pseudo-label checks (fractions of image width W / road
    height; see the module docstring); the lane-shape bounds are those of ``lanefit``,
    ``convergence`` and ``slots``."""

    min_points: int = 6
    min_span: float = 0.15
    min_inliers: float = 0.7
    outlier_tol: float = 0.012
    rms_tol: float = 0.006
    bend_tol: float = 0.05
    temporal_tol: float = 0.05
    hood_margin: float = 0.01
    hood_reach: float = 0.05
    hood_tol: float = 0.03
    min_confidence: float = 0.6


@dataclass
class Camera:
    """What the drive says about the camera: ``size`` (W, H), ``hood_y`` (W,) first static row per
    column (H where there is none), ``vp`` (x, y) vanishing point or None, ``lane_top`` the row
    up to which the drive's lanes are seen (:func:`lane_top`) or None, ``teacher_top`` where the
    teacher's confident lanes end (:func:`teacher_top`) or None."""

    size: tuple[int, int]
    hood_y: np.ndarray
    vp: tuple[float, float] | None = None
    lane_top: float | None = None  # row up to which pseudo-labels are continued (None: not continued)
    teacher_top: float | None = None  # where the teacher's confident lanes end (:func:`teacher_top`)

    @property
    def road_top(self) -> float | None:
        """Row where the road ends: the vanishing point's, else the teacher's lane top, else None."""
        return self.vp[1] if self.vp is not None else self.teacher_top

    @property
    def has_hood(self) -> bool:
        return bool(np.any(self.hood_y < self.size[1]))

    def describe(self) -> dict:
        w, h = self.size
        return {"size": [w, h], "vanishing_point": None if self.vp is None else [round(self.vp[0], 1),
                                                                                 round(self.vp[1], 1)],
                "lane_top_row": None if self.lane_top is None else round(self.lane_top, 1),
                "teacher_top_row": None if self.teacher_top is None else round(self.teacher_top, 1),
                "hood_top_row": {"min": round(float(self.hood_y.min()), 1),
                                 "median": round(float(np.median(self.hood_y)), 1)}
                if self.has_hood else None}


@dataclass
class Checked:
    """One teacher lane after the checks: ``label`` (N, 2) smooth points bottom to top when
    accepted, ``reason`` why not otherwise; ``line`` (x at row y = a + b y) of its near half."""

    slot: int
    confidence: float
    raw: np.ndarray
    label: np.ndarray | None = None
    line: tuple[float, float] | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.label is not None and not self.reason


@dataclass
class FrameLabels:
    """Pseudo-labels of one frame: accepted lanes, rejected ones (ignored in the loss), and the
    teacher's existence probabilities (slots it is sure are empty are taught as absent)."""

    lanes: list[Checked] = field(default_factory=list)
    exist_prob: np.ndarray | None = None

    @property
    def accepted(self) -> list[Checked]:
        return [c for c in self.lanes if c.ok]

    @property
    def rejected(self) -> list[Checked]:
        return [c for c in self.lanes if not c.ok]


def _on_rows(points: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x of a lane polyline (N, 2) at ``rows`` (R,) ascending, NaN outside its row extent."""
    p = points[np.argsort(points[:, 1], kind="stable")]
    inside = (rows >= p[0, 1]) & (rows <= p[-1, 1])
    return np.where(inside, np.interp(rows, p[:, 1], p[:, 0]), np.nan)


def _ascending(points: np.ndarray) -> np.ndarray:
    """Points (N, 2) sorted top to bottom, with repeated rows averaged (one x per row)."""
    rows, index = np.unique(points[:, 1], return_inverse=True)
    xs = np.bincount(index, weights=points[:, 0]) / np.bincount(index)
    return np.stack([xs, rows], axis=1)


def _hyperbola(points: np.ndarray, width: int, height: int, rules: LaneRules):
    """The lane hyperbola of ``lanefit`` fitted to one lane's points (N, 2), rows ascending ->
    (x of the fit at those rows, inlier mask, function rows -> x of the fit)."""
    y, x = points[:, 1], points[:, 0]
    # Horizon candidates from 0.7 h above the lane's top row down to it (horizon_grid's span of
    # 0.7 h), plus its far ones; a horizon must lie above every point of the lane anyway.
    tables = make_tables(y, y, horizon_grid(height, y[0] - 0.4 * height), height)
    fit = fit_lanes(x[None], np.ones((1, len(y))), tables, inlier_px=rules.outlier_tol * width)
    coef, horizon = fit.coef[0], float(fit.horizon[0])

    def curve(rows: np.ndarray) -> np.ndarray:  # the basis [1, t/S, S/t] of LaneFit.coef
        t = np.maximum(np.asarray(rows, np.float64) - horizon, tables.margin)
        return coef[0] + coef[1] * t / tables.scale + coef[2] * tables.scale / t

    return fit.x_out[0], fit.inliers[0], curve


def near_line(points: np.ndarray) -> tuple[float, float]:
    """Straight line x = a + b y through the lower half of a lane's rows: the near-field line
    of ``lanesad_ros.convergence`` (``near_field_lines``), the direction its rules judge."""
    p = _ascending(np.asarray(points, dtype=np.float64).reshape(-1, 2))
    b, a = near_field_lines(p[None, :, 0], p[:, 1])[0]
    return float(a), float(b)


def check_lane(lane: Lane, camera: Camera, rules: LaneRules, cut_hood: bool = True) -> Checked:
    """Shape checks of one lane (see the module docstring), on its points above the hood.

    The hood hides the road, not the lane: labels (TuSimple, CULane) continue a lane to the
    image bottom. ``cut_hood`` (pseudo-labels): the teacher's points on the hood are dropped
    and a lane that reaches the hood is continued along its near line to the bottom row.
    Otherwise (criteria) the points a detector draws on the hood must follow that line
    within ``hood_tol`` of the width."""
    w, h = camera.size
    pts = np.asarray(lane.image_points, dtype=np.float64).reshape(-1, 2)
    out = Checked(slot=int(lane.slot), confidence=float(lane.confidence), raw=pts.astype(np.float32))
    if out.slot == LaneSlot.UNKNOWN:
        out.reason = "no slot"
        return out
    hood_pts = pts[:0]
    if len(pts):
        col = np.clip(np.rint(pts[:, 0]), 0, w - 1).astype(int)
        on_hood = pts[:, 1] >= camera.hood_y[col] - rules.hood_margin * h
        pts, hood_pts = pts[~on_hood], pts[on_hood]
        pts = _ascending(pts) if len(pts) else pts
    if len(pts) >= 2:  # convergence rule 1: no lane runs across the view; the part beyond is cut
        pts = pts[np.isfinite(trim_across(pts[None, :, 0], pts[:, 1], h)[0])]
    if len(pts) < rules.min_points:
        out.reason = "too few rows"
        return out
    road_top = camera.road_top if camera.road_top is not None else 0.0
    bottom = min(float(h), float(np.median(camera.hood_y)))
    span = float(pts[:, 1].max() - pts[:, 1].min())
    if span < rules.min_span * max(bottom - road_top, 1.0):
        out.reason = "too short"
        return out
    fitted, inliers, curve = _hyperbola(pts, w, h, rules)
    if inliers.mean() < rules.min_inliers or inliers.sum() < rules.min_points:
        out.reason = "rows scattered (no smooth curve fits)"
        return out
    kept = pts[inliers]
    if float(np.sqrt(np.mean((fitted[inliers] - kept[:, 0]) ** 2))) > rules.rms_tol * w:
        out.reason = "snakes (not a smooth curve)"
        return out
    y_lo, y_hi = float(kept[:, 1].min()), float(kept[:, 1].max())
    rows = np.linspace(y_hi, y_lo, max(2, int(round((y_hi - y_lo) / (h / 90.0))) + 1))
    xs = curve(rows)
    chord = xs[0] + (xs[-1] - xs[0]) * (rows - rows[0]) / (rows[-1] - rows[0])
    if float(np.max(np.abs(xs - chord))) > rules.bend_tol * w:
        out.reason = "bends too much"
        return out
    label = np.stack([xs, rows], axis=1)
    out.line = a, b = near_line(label)
    if camera.vp is not None and supports(np.array([b, a]), y_lo, y_hi, camera.vp, h) is None:
        out.reason = "misses the vanishing point"
        return out
    if not cut_hood and len(hood_pts) > 1:
        if float(np.mean(np.abs(hood_pts[:, 0] - (a + b * hood_pts[:, 1])))) > rules.hood_tol * w:
            out.reason = "leaves its line on the hood"
            return out
    if cut_hood and camera.lane_top is not None and y_lo > camera.lane_top + h / 90.0:
        label = _continue_up(label, camera.vp, camera.lane_top, h)
    x_end = int(np.clip(round(label[0, 0]), 0, w - 1))
    if cut_hood and camera.has_hood and label[0, 1] >= camera.hood_y[x_end] - rules.hood_reach * h:
        step = h / 90.0
        rows = np.arange(label[0, 1] + step, h, step)[::-1]
        label = np.concatenate([np.stack([a + b * rows, rows], axis=1), label])
        label = label[(label[:, 0] >= 0) & (label[:, 0] <= w - 1)]
    out.label = label.astype(np.float32)
    return out


def _continue_up(label: np.ndarray, vp: tuple[float, float], top: float, height: int) -> np.ndarray:
    """``label`` (N, 2) bottom to top, continued from its top point straight towards the
    vanishing point ``vp`` up to row ``top``: what hides the lane hides its bend too, and the
    lanes of a drive meet at its vanishing point (the lane hyperbola's own extrapolation bent
    away from the labelled lanes behind the cars of clip 06030822_0756)."""
    step = height / 90.0
    x0, y0 = float(label[-1, 0]), float(label[-1, 1])
    rows = np.arange(y0 - step, top - 1e-6, -step)
    if len(rows) == 0 or y0 - vp[1] < step:
        return label
    xs = x0 + (vp[0] - x0) * (y0 - rows) / (y0 - vp[1])
    return np.concatenate([label, np.stack([xs, rows], axis=1)])


def teacher_top(lanes_per_frame: list[list[Lane]], height: int, rules: LaneRules) -> float | None:
    """Where the drive's road ends before the vanishing point is known (image row, down from the
    top): the ``TEACHER_TOP_PERCENTILE`` of the top rows of the teacher's lanes of at least
    ``rules.min_confidence`` and ``rules.min_points`` rows (the higher lanes: short fragments near
    the bottom do not pull it down), at most ``MAX_TEACHER_TOP`` of ``height`` (the span rule keeps
    a road of at least the rest). None without such lanes."""
    tops = []
    for lanes in lanes_per_frame:
        for lane in lanes:
            pts = np.asarray(lane.image_points, np.float64).reshape(-1, 2)
            if lane.confidence >= rules.min_confidence and len(pts) >= rules.min_points:
                tops.append(float(pts[:, 1].min()))
    if not tops:
        return None
    return float(min(np.percentile(tops, TEACHER_TOP_PERCENTILE), MAX_TEACHER_TOP * height))


def lane_top(labels: list[np.ndarray], vp: tuple[float, float] | None, height: int) -> float | None:
    """Row up to which the drive's lanes are seen: the ``LANE_TOP_PERCENTILE`` of the top rows of
    ``labels`` (accepted pseudo-labels, (N, 2) each), not above the vanishing point. None with
    fewer than 5 labels or no vanishing point (labels are then not continued)."""
    if vp is None or len(labels) < 5:
        return None
    tops = np.array([float(np.min(label[:, 1])) for label in labels])
    return float(max(np.percentile(tops, LANE_TOP_PERCENTILE), vp[1] + 0.02 * height))


def vanishing_point(lines_per_frame: list[list[tuple[float, float]]],
                    size: tuple[int, int]) -> tuple[float, float] | None:
    """Median intersection of pairs of near-lines (x = a + b y) of opposite lean in each frame.

    Returns None with fewer than 3 intersections inside a generous window around the image.
    """
    w, h = size
    points = []
    for lines in lines_per_frame:
        for i in range(len(lines)):
            for j in range(i + 1, len(lines)):
                (a1, b1), (a2, b2) = lines[i], lines[j]
                if b1 * b2 >= 0 or abs(b1 - b2) < 1e-3:
                    continue
                y = (a2 - a1) / (b1 - b2)
                x = a1 + b1 * y
                if -0.5 * w <= x <= 1.5 * w and -0.5 * h <= y <= h:
                    points.append((x, y))
    if len(points) < 3:
        return None
    pts = np.asarray(points)
    return float(np.median(pts[:, 0])), float(np.median(pts[:, 1]))


_LEFT_SIDE = (LaneSlot.LEFT_LEFT, LaneSlot.LEFT)
_RIGHT_SIDE = (LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT)


def check_frame(checked: list[Checked], camera: Camera, rules: LaneRules) -> None:
    """Frame-level checks on the accepted lanes (in place), the decoder's rules in its order:
    convergence to one vanishing region (``convergence.converging``), the labelling rule's side
    of the camera column at the bottom row and no crossings (``slots`` rules 1-2), outer spacing
    (``slots.spacing_ratio`` within ``LEFT_LEFT_SPACING`` / ``RIGHT_RIGHT_SPACING``)."""
    w, h = camera.size
    good = sorted((c for c in checked if c.ok), key=lambda c: c.slot)
    if not good:
        return
    rows = np.linspace(0.0, h - 1.0, _GRID_ROWS)
    x = np.stack([_on_rows(c.label, rows) for c in good])
    keep = converging(x, rows, np.array([c.confidence for c in good]), w, h)
    for c in (c for c, k in zip(good, keep, strict=True) if not k):
        c.reason = "does not converge with the frame's lanes"
    x, good = x[keep], [c for c, k in zip(good, keep, strict=True) if k]
    column = w / 2.0  # slots' camera column: the image centre (no principal point from a drive)
    bottom = [x_at_row(c.label, h - 1.0) for c in good]
    for c, xb in zip(good, bottom, strict=True):
        if c.slot in _LEFT_SIDE and xb >= column:
            c.reason = f"{LaneSlot(c.slot).name} starts right of the camera"
        if c.slot in _RIGHT_SIDE and xb < column:
            c.reason = f"{LaneSlot(c.slot).name} starts left of the camera"
    for i in range(len(good) - 1):
        a, b = good[i], good[i + 1]
        if np.any(x[i] >= x[i + 1]) or bottom[i] >= bottom[i + 1]:  # NaN compares False: shared rows only
            a.reason = b.reason = "lanes cross"
    by_slot = {c.slot: k for k, c in enumerate(good) if c.ok}
    left, right = by_slot.get(LaneSlot.LEFT), by_slot.get(LaneSlot.RIGHT)
    if left is None or right is None:
        return
    for outer, inner, bounds in ((LaneSlot.LEFT_LEFT, left, LEFT_LEFT_SPACING),
                                 (LaneSlot.RIGHT_RIGHT, right, RIGHT_RIGHT_SPACING)):
        k = by_slot.get(outer)
        if k is None:
            continue
        ratio = spacing_ratio(x[k], x[inner], x[left], x[right], w)
        if ratio is not None and not plausible_spacing(ratio, bounds):
            good[k].reason = "spacing to its neighbour is not a lane width"


def _line_distance(a: Checked, b: Checked, camera: Camera) -> float:
    """Mean |dx| of two near-lines over the road rows between the vanishing point and the hood."""
    w, h = camera.size
    top = camera.road_top if camera.road_top is not None else 0.4 * h
    bottom = float(min(h - 1, np.median(camera.hood_y)))
    rows = np.linspace(top + 0.3 * (bottom - top), bottom, 5)
    return float(np.mean(np.abs((a.line[0] + a.line[1] * rows) - (b.line[0] + b.line[1] * rows))))


def temporal_filter(frames: list[list[Checked]], camera: Camera, rules: LaneRules) -> None:
    """Reject (in place) accepted lanes with no same-slot accepted lane nearby in a neighbouring frame."""
    if len(frames) < 3:
        return
    w = camera.size[0]
    by_slot = [{c.slot: c for c in checked if c.ok} for checked in frames]
    for i, checked in enumerate(frames):
        for c in checked:
            if not c.ok:
                continue
            near = [by_slot[j].get(c.slot) for j in (i - 1, i + 1) if 0 <= j < len(frames)]
            if not any(n is not None and _line_distance(c, n, camera) <= rules.temporal_tol * w for n in near):
                c.reason = "flickers (not in a neighbouring frame)"


def check_lanes(lanes: list[Lane], camera: Camera, rules: LaneRules, cut_hood: bool = True) -> list[Checked]:
    """:func:`check_lane` on each lane (confidence first), then :func:`check_frame`."""
    checked = []
    for lane in lanes:
        if lane.confidence < rules.min_confidence:
            c = Checked(slot=int(lane.slot), confidence=float(lane.confidence),
                        raw=np.asarray(lane.image_points, np.float32).reshape(-1, 2), reason="low confidence")
        else:
            c = check_lane(lane, camera, rules, cut_hood=cut_hood)
        checked.append(c)
    check_frame(checked, camera, rules)
    return checked


def estimate_camera(lanes_per_frame: list[list[Lane]], greys: list[np.ndarray], size: tuple[int, int],
                    rules: LaneRules) -> Camera:
    """Static bottom region from the frames, then the vanishing point from the lanes that pass
    the shape checks (which do not need it), then the lane top from the lanes that pass with it."""
    camera = Camera(size=size, hood_y=static_bottom(greys, size),
                    teacher_top=teacher_top(lanes_per_frame, size[1], rules))
    lines = [[c.line for c in check_lanes(lanes, camera, rules) if c.ok and c.line is not None
              and c.confidence >= 0.8] for lanes in lanes_per_frame]
    camera.vp = vanishing_point(lines, size)
    if camera.vp is not None:
        accepted = [c.label for lanes in lanes_per_frame for c in check_lanes(lanes, camera, rules) if c.ok]
        camera.lane_top = lane_top(accepted, camera.vp, size[1])
    return camera


def pseudo_labels(lanes_per_frame: list[list[Lane]], exist_per_frame: list[np.ndarray], camera: Camera,
                  rules: LaneRules, sequence: bool) -> list[FrameLabels]:
    """The teacher's lanes of every frame of one source -> FrameLabels (checks, then temporal)."""
    checked = [check_lanes(lanes, camera, rules) for lanes in lanes_per_frame]
    if sequence:
        temporal_filter(checked, camera, rules)
    return [FrameLabels(lanes=c, exist_prob=np.asarray(e, np.float32))
            for c, e in zip(checked, exist_per_frame, strict=True)]
