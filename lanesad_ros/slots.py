"""Ego-relative lane slots (LEFT_LEFT, LEFT, RIGHT, RIGHT_RIGHT) that respect road geometry.

What the network learns. One probability map and one existence probability per slot
channel, trained on labels whose slots ``assign_slots`` gives by position: lanes are compared
at the bottom image row (lanes that end higher are extended linearly), the nearest left of
the image centre is LEFT, the next LEFT_LEFT, likewise on the right. The network is only
shown examples of this rule; nothing in it forces its four lanes to be ordered, to straddle
the camera or to lie a lane width apart, and on real frames it does put LEFT_LEFT on a
concrete barrier and RIGHT_RIGHT across a vehicle.

What the postprocessing enforces (``resolve_slots``, called by the decoder on every frame), after
the rules of ``lanesad_ros.convergence`` (no lane across the view, one vanishing region, steep
boundaries next to the camera, in that order):

1. Lanes ordered left to right never cross within the rows they are reported on. When two
   lanes cross, the one with the lower existence probability gives way: if the pair is in
   order at their lowest shared row (they converge and touch near the horizon) it loses
   its rows from the crossing up; otherwise it is dropped.
2. Slots follow the labelling rule: the ego pair straddles the image column under the camera
   (the bottom-row x of LEFT < camera column < RIGHT; the camera column is the image centre
   unless the principal point cx is known), and each side keeps at most its two nearest lanes.
3. LEFT_LEFT / RIGHT_RIGHT are reported only where their spacing to the neighbouring ego lane,
   as a ratio to the ego lane width at the same rows, lies in the range real lanes have, and
   stays about constant along the rows (parallel lanes on the road keep a constant ratio in
   the image). A barrier or a vehicle edge has an implausible spacing or shape and is dropped.
   Outer lanes are checked only where both ego lanes are seen on at least ``MIN_SHARED_ROWS``
   rows beside them; otherwise they are kept.
"""
from __future__ import annotations

import numpy as np

from lanesad_ros.convergence import MAX_INNER_SLOPE, converging, near_field_lines, steep_inner, trim_across
from lanesad_ros.lanes import LaneSlot

# Plausible spacing of an outer lane to its neighbouring ego lane, as a ratio to the ego lane
# width at the same rows: the 0.5th and 99.5th percentiles of the per-lane median ratio over
# the 3,626 TuSimple training labels (tusimple-geometry; slots by assign_slots; rows where the
# ego lane is at least EGO_WIDTH_MIN_FRACTION of the image wide, at least MIN_SHARED_ROWS of
# them). LEFT_LEFT: 3,035 lanes, median 0.92; RIGHT_RIGHT: 3,154 lanes, median 1.05 (US
# highways: wider lanes or shoulders on the right). test_slots.py re-measures them.
LEFT_LEFT_SPACING = (0.57, 1.28)
RIGHT_RIGHT_SPACING = (0.70, 1.84)
# Largest max/min of that ratio along one lane: the 99.5th percentile over both sides (6,189 lanes).
SPACING_SPREAD_MAX = 1.58
# Rows where the ego lane is narrower than this share of the image width are not used for
# the ratio: near the horizon a pixel of error is a large share of the spacing.
EGO_WIDTH_MIN_FRACTION = 0.15
MIN_SHARED_ROWS = 3


def x_at_row(lane: np.ndarray, row: float) -> float:
    """x of a lane polyline (N, 2) at ``row``, extended linearly from its lowest (up to 4)
    points when the lane ends above the row (the labelling rule for slots)."""
    pts = lane[np.argsort(lane[:, 1], kind="stable")]
    if len(pts) == 1:
        return float(pts[0, 0])
    if row <= pts[-1, 1]:
        return float(np.interp(row, pts[:, 1], pts[:, 0]))
    tail = pts[-min(len(pts), 4):]
    dy = tail[-1, 1] - tail[0, 1]
    if dy <= 0:
        return float(tail[-1, 0])
    slope = (tail[-1, 0] - tail[0, 0]) / dy
    return float(tail[-1, 0] + slope * (row - tail[-1, 1]))


def slots_by_position(bottom_x: np.ndarray, camera_column: float, num_slots: int = 4) -> np.ndarray:
    """Slot per lane from its x at the bottom row (NaN = no lane): the nearest lanes left of
    ``camera_column`` get LEFT then LEFT_LEFT, right of it RIGHT then RIGHT_RIGHT; the rest
    ``LaneSlot.UNKNOWN``. Other ``num_slots`` fill ``num_slots // 2`` per side, numbered left to right."""
    bottom_x = np.asarray(bottom_x, dtype=np.float64)
    slots = np.full(len(bottom_x), int(LaneSlot.UNKNOWN))
    usable = np.flatnonzero(np.isfinite(bottom_x))
    per_side = num_slots // 2
    left = sorted((i for i in usable if bottom_x[i] < camera_column), key=lambda i: -bottom_x[i])[:per_side]
    right = sorted((i for i in usable if bottom_x[i] >= camera_column), key=lambda i: bottom_x[i])
    for rank, i in enumerate(left):
        slots[i] = per_side - 1 - rank
    for rank, i in enumerate(right[:num_slots - per_side]):
        slots[i] = per_side + rank
    return slots


def assign_slots(lanes: list[np.ndarray], image_width: int, num_slots: int = 4) -> list[int]:
    """Ego-relative slot for each labelled lane polyline (N, 2) x,y (in the given order).

    Lanes are compared by their x at the lowest labelled row of the frame (``x_at_row``), on
    either side of the image centre (``slots_by_position``). Empty lanes get ``LaneSlot.UNKNOWN``.
    """
    arrays = [np.asarray(lane, dtype=np.float32).reshape(-1, 2) for lane in lanes]
    usable = [i for i, lane in enumerate(arrays) if len(lane) > 0]
    if not usable:
        return [int(LaneSlot.UNKNOWN)] * len(lanes)
    bottom = max(float(arrays[i][:, 1].max()) for i in usable)
    xs = np.full(len(arrays), np.nan)
    for i in usable:
        xs[i] = x_at_row(arrays[i], bottom)
    return [int(s) for s in slots_by_position(xs, image_width / 2.0, num_slots)]


def resolve_slots(x: np.ndarray, rows: np.ndarray, confidence: np.ndarray, image_width: int,
                  camera_column: float | None = None, num_slots: int | None = 4,
                  image_height: int | None = None,
                  max_inner_slope: float = MAX_INNER_SLOPE) -> tuple[np.ndarray, np.ndarray]:
    """Apply the rules of ``lanesad_ros.convergence`` (no lane runs across the view; the lanes
    of a frame converge to one vanishing region; the nearest lane on each side of the camera is
    steep), then the three rules of the module docstring, to one frame's lanes.

    ``x`` (n, R): each lane's x (source px) at ``rows`` (R,), NaN where it is not reported;
    lanes are listed in the network's channel order (left to right). ``confidence`` (n,):
    existence probabilities. ``camera_column``: source column under the camera (default the
    image centre). ``image_height``: source rows (default: the last of ``rows`` + 1).
    ``num_slots``: the network's lane count; for anything but 4 only rule 1 and the
    convergence rules apply (other counts have no ego-relative slots).
    ``max_inner_slope``: the bound of ``convergence.steep_inner`` (0: that rule off, e.g. for a
    camera lower than about 0.6 m above the road).

    Returns (x with dropped lanes and trimmed rows set to NaN, slot per lane): dropped lanes
    have all-NaN rows and slot ``LaneSlot.UNKNOWN``.
    """
    x = np.array(x, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    height = int(rows[-1]) + 1 if image_height is None else int(image_height)
    column = image_width / 2.0 if camera_column is None else float(camera_column)
    if len(x):
        x = trim_across(x, rows, height)
        lines = near_field_lines(x, rows)  # once for rules 2 and 3 (a dropped lane has no bottom column)
        x[~converging(x, rows, confidence, image_width, height, lines)] = np.nan
        if max_inner_slope > 0:  # before rule 1 below: a flat lane must not cut the real one it crosses
            x[~steep_inner(lines[:, 0], bottom_columns(x, rows), column, max_inner_slope)] = np.nan
    _uncross(x, confidence)
    bottom_x = bottom_columns(x, rows)
    if num_slots != 4:
        return x, np.full(len(x), int(LaneSlot.UNKNOWN))
    slots = slots_by_position(bottom_x, column, 4)
    x[slots == int(LaneSlot.UNKNOWN)] = np.nan
    by_slot = {int(s): k for k, s in enumerate(slots) if s != int(LaneSlot.UNKNOWN)}
    left, right = by_slot.get(int(LaneSlot.LEFT)), by_slot.get(int(LaneSlot.RIGHT))
    for outer, neighbour, bounds in ((LaneSlot.LEFT_LEFT, left, LEFT_LEFT_SPACING),
                                     (LaneSlot.RIGHT_RIGHT, right, RIGHT_RIGHT_SPACING)):
        k = by_slot.get(int(outer))
        if k is None or left is None or right is None:
            continue
        ratio = spacing_ratio(x[k], x[neighbour], x[left], x[right], image_width)
        if ratio is not None and not plausible_spacing(ratio, bounds):
            x[k] = np.nan
            slots[k] = int(LaneSlot.UNKNOWN)
    return x, slots


def spacing_ratio(outer: np.ndarray, neighbour: np.ndarray, left: np.ndarray, right: np.ndarray,
                  image_width: int) -> np.ndarray | None:
    """|outer - neighbour| / (right - left) at the rows where all four are seen and the ego
    lane is at least ``EGO_WIDTH_MIN_FRACTION`` of the image wide; None below ``MIN_SHARED_ROWS`` rows."""
    width = right - left
    shared = np.isfinite(outer) & np.isfinite(neighbour) & (width >= EGO_WIDTH_MIN_FRACTION * image_width)
    if np.count_nonzero(shared) < MIN_SHARED_ROWS:
        return None
    return np.abs(outer[shared] - neighbour[shared]) / width[shared]


def plausible_spacing(ratio: np.ndarray, bounds: tuple[float, float]) -> bool:
    """Whether spacing ratios along one lane look like a lane: median within ``bounds`` and
    max / min at most ``SPACING_SPREAD_MAX``."""
    low, high = bounds
    ratio = np.sort(ratio)
    mid = len(ratio) // 2
    median = ratio[mid] if len(ratio) % 2 else 0.5 * (ratio[mid - 1] + ratio[mid])
    return bool(low <= median <= high and ratio[-1] <= SPACING_SPREAD_MAX * max(ratio[0], 1e-9))


def bottom_columns(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each lane's x at the last of ``rows`` (source px; lanes that end higher are extended
    linearly, as the labelling rule compares them); NaN for lanes seen on fewer than 2 rows.
    ``x`` (n, R) at ``rows`` (R,) ascending, NaN where unseen -> (n,)."""
    seen = np.isfinite(x)
    out = np.full(len(x), np.nan)
    for k in np.flatnonzero(seen.sum(axis=1) >= 2):
        out[k] = _bottom_x(x[k], rows, np.flatnonzero(seen[k]))
    return out


def _bottom_x(x: np.ndarray, rows: np.ndarray, seen: np.ndarray) -> float:
    """``x_at_row`` at the last of ``rows`` for one lane of a row grid (``seen``: its indices)."""
    last = seen[-1]
    if last == len(rows) - 1:
        return float(x[last])
    first = seen[max(len(seen) - 4, 0)]
    dy = rows[last] - rows[first]
    slope = (x[last] - x[first]) / dy if dy > 0 else 0.0
    return float(x[last] + slope * (rows[-1] - rows[last]))


_LATER = np.triu(np.ones((8, 8), dtype=bool), 1)[:, :, None]  # pairs (i, j > i) of up to 8 lanes


def _uncross(x: np.ndarray, confidence: np.ndarray) -> None:
    """Rule 1, in place: while two lanes (listed left to right) cross, the weakest lane of a
    crossing pair gives way."""
    n = len(x)
    later = _LATER[:n, :n] if n <= len(_LATER) else np.triu(np.ones((n, n), dtype=bool), 1)[:, :, None]
    for _ in range(n * n):
        crossing = (x[:, None, :] >= x[None, :, :]) & later  # NaN compares False: only rows both report
        i, j = np.nonzero(crossing.any(axis=2))
        if len(i) == 0:
            return
        weaker = np.where(confidence[i] < confidence[j], i, j)
        pick = int(np.argmin(confidence[weaker]))
        k, i, j = weaker[pick], i[pick], j[pick]
        shared = np.flatnonzero(np.isfinite(x[i]) & np.isfinite(x[j]))
        rows = crossing[i, j]
        if not rows[shared[-1]]:  # rows ascend: in order at the nearest shared row, so cut the far end
            x[k, :np.flatnonzero(rows)[-1] + 1] = np.nan
        else:
            x[k] = np.nan
