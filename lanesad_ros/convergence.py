"""What a lane looks like from a car, on any camera: it runs away from the camera towards one
vanishing region shared by every lane of the frame.

Lane boundaries are (nearly) parallel lines on the road plane, so a pinhole camera sees them
converge to one vanishing point on the horizon, whatever its focal length, height or pitch
(the premise of the lane hyperbola in ``lanefit``: Kluge 1994; and of vanishing-point lane
detectors, e.g. Lee et al., "VPGNet", ICCV 2017). Painted lines that are *not* lane
boundaries break this: a stop line, a zebra crossing or the kerb of a cross street at an
intersection runs across the view; the horizon or a roof edge is flat; a vehicle's side or a
kerb curving away points somewhere else. Two rules, both without a camera model:

1. **Across the view** (``MAX_SLOPE``): a boundary seen from the car runs up the image. Where a
   decoded lane turns flatter than any real boundary (``|dx/dy|`` above ``MAX_SLOPE`` over a
   chord of ``CHORD`` of the image height), the rest of it, further up, is cut off
   (``trim_across``): the lane that swept along a kerb or a row of cars keeps its near part.
   A lane whose near-field direction (the line fitted to the lower half of its rows) is that
   flat is no lane at all: a stop line, a crossing, the horizon.
2. **Not converging** (``MAX_VP_ANGLE``, ``MAX_ABOVE_VP``): with two or more lanes seen over at
   least ``MIN_SPAN`` of the image height, the frame's vanishing point is chosen by consensus
   among the intersections of the lanes' near-field lines (see :func:`converging`). A lane is
   dropped when its near-field direction points more than ``MAX_VP_ANGLE`` degrees away from
   it, or when it is seen more than ``MAX_ABOVE_VP`` image heights above it (nothing on the road
   plane lies above the horizon); one wrong lane, however confident, cannot carry the point away.
3. **The ego lane's boundaries are steep** (``MAX_INNER_SLOPE``, :func:`steep_inner`): on a flat
   road a pinhole camera without roll sees a boundary ``X`` metres to its side from height ``H``
   at ``dx/dy = X / H`` in the image, whatever its focal length, pitch or yaw (``x = f X / Z``,
   ``y = f H / Z``). The nearest lane on either side of the camera is at most about a lane width
   away, so from a camera at car height it runs steeply up the image; a kerb curving away, a stop line or the
   edge of a crossing that the network reports there is flatter. The nearest lane on a side that
   is flatter than ``MAX_INNER_SLOPE`` is dropped, and the next one out is judged in its place.
   The premise fails for a camera low above the road: ``X / H`` exceeds the bound for a boundary
   3.6 m away (the far side of the lane) below a height of 0.55 m, and for a centred camera in a
   3.6 m lane below 0.28 m. Such cameras set ``max_inner_slope`` (the decoder's option and the
   node's parameter) higher, or 0 to turn the rule off.

The bounds come from the real label geometry (measured by ``test_convergence.py`` on the
3,626 TuSimple training labels and the 120 CULane frames of ``../shared/data``): the flattest
labelled near-field direction has ``|dx/dy|`` 9.4 (TuSimple; CULane 6.7); of the TuSimple lanes
seen over at least ``MIN_SPAN``, 99.9 % point within 14 degrees of the others' vanishing point.
The nearest labelled lane on either side of the image centre is steeper: ``|dx/dy|`` at most 4.1
(TuSimple, 7,251 such lanes) and 3.1 (CULane, 228). With the margins below no labelled lane of
either dataset is dropped (one TuSimple lane loses its 2 topmost points to rule 1).
"""
from __future__ import annotations

import numpy as np

# Flattest near-field direction a boundary may have, |dx/dy| (columns per row): the label
# maximum (9.4, TuSimple: an outer lane at the image edge) with a 1.5x margin, i.e. about
# 4 degrees from the horizontal.
MAX_SLOPE = 14.0
# Flattest near-field direction the nearest lane on either side of the camera may have, |dx/dy|:
# the label maximum (4.14, TuSimple; 76.4 degrees from the vertical) turned by 4.8 more degrees for
# camera roll (81.3 degrees). X / H = 6.5 is also a boundary 3.9 m to the side of a camera 0.6 m high.
MAX_INNER_SLOPE = 6.5
# Largest angle between a lane's near-field direction and the ray from its lowest point to the
# frame's vanishing point, degrees.
MAX_VP_ANGLE = 30.0
# Lanes seen over fewer rows than this share of the image height have too uncertain a direction
# for the angle rule (short far-away stubs near the horizon); the other rules still apply.
MIN_SPAN = 0.1
# How far above the vanishing row a lane may be seen, in image heights (decoding noise near
# the horizon; a lane never truly reaches above it).
MAX_ABOVE_VP = 0.15
# Rows (as a share of the image height) over which a local direction is measured: label points
# are 10 px apart, a single step of them is too noisy a slope.
CHORD = 0.03
# Share of a lane's seen rows (the lowest) its near-field line is fitted to.
NEAR_FIELD = 0.5


def trim_across(x: np.ndarray, rows: np.ndarray, image_height: int) -> np.ndarray:
    """Rule 1's cut: ``x`` (n, R) at ``rows`` (R,) ascending, NaN where unseen -> a copy with each
    lane's rows from the first (going up from its lowest row) where it runs flatter than
    ``MAX_SLOPE`` over a chord of ``CHORD * image_height`` rows set to NaN."""
    x = np.array(x, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.float64)
    chord = CHORD * image_height
    for k in range(len(x)):
        seen = np.flatnonzero(np.isfinite(x[k]))[::-1]  # bottom first
        if len(seen) < 2:
            continue
        y, xs = rows[seen], x[k, seen]
        # for each point, the next point at least a chord further up (or the topmost)
        far = np.minimum(np.searchsorted(-y, -(y - chord), side="left"), len(y) - 1)
        dy = y - y[far]
        usable = dy >= 0.5 * chord
        slope = np.where(usable, np.abs(xs[far] - xs) / np.where(usable, dy, 1.0), 0.0)
        flat = np.flatnonzero(slope > MAX_SLOPE)
        if len(flat):
            x[k, seen[flat[0] + 1:]] = np.nan
    return x


def steep_inner(slope: np.ndarray, bottom_x: np.ndarray, column: float,
                bound: float = MAX_INNER_SLOPE) -> np.ndarray:
    """Rule 3: which lanes to keep (bool (n,)) so that the nearest lane on each side of the
    camera is no flatter than ``bound`` (default ``MAX_INNER_SLOPE``).

    ``slope`` (n,): near-field ``dx/dy`` of each lane (:func:`near_field_lines`; NaN: not judged);
    ``bottom_x`` (n,): its x at the bottom image row (source px; NaN: no position, kept);
    ``column``: the source column under the camera. On each side, going outwards from
    ``column``, lanes flatter than the bound are dropped until the first one that is not.
    """
    slope = np.asarray(slope, dtype=np.float64)
    bottom_x = np.asarray(bottom_x, dtype=np.float64)
    keep = np.ones(len(slope), dtype=bool)
    placed = np.flatnonzero(np.isfinite(bottom_x))
    left = sorted((k for k in placed if bottom_x[k] < column), key=lambda k: -bottom_x[k])
    right = sorted((k for k in placed if bottom_x[k] >= column), key=lambda k: bottom_x[k])
    for side in (left, right):
        for k in side:
            if not np.abs(slope[k]) > bound:  # NaN: not judged, counts as the nearest
                break
            keep[k] = False
    return keep


def near_field_lines(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Line ``x = m * y + q`` through the lower ``NEAR_FIELD`` of each lane's seen rows.

    ``x`` (n, R) source x at ``rows`` (R,) ascending, NaN where unseen. Returns (n, 2) [m, q];
    NaN for a lane seen on fewer than 2 rows.
    """
    x = np.asarray(x, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.float64)
    out = np.full((len(x), 2), np.nan)
    for k in range(len(x)):
        seen = np.flatnonzero(np.isfinite(x[k]))
        if len(seen) < 2:
            continue
        top, bottom = rows[seen[0]], rows[seen[-1]]
        near = seen[rows[seen] >= bottom - NEAR_FIELD * (bottom - top)]
        if len(near) < 2:
            near = seen[-2:]
        y, xs = rows[near], x[k, near]
        y0, x0 = y.mean(), xs.mean()
        m = float(((y - y0) * (xs - x0)).sum() / ((y - y0) ** 2).sum())  # least squares, as polyfit(deg 1)
        out[k] = (m, x0 - m * y0)
    return out


def support_angles(lines: np.ndarray, top: np.ndarray, bottom: np.ndarray, judge_direction: np.ndarray,
                   xv: np.ndarray, yv: np.ndarray, image_height: int) -> np.ndarray:
    """Rule 2 for K lanes and P candidate vanishing points (``xv``, ``yv``: (P,) source px).

    ``lines`` (K, 2) near-field [m, q]; ``top`` / ``bottom`` (K,) the rows each lane is seen from /
    down to; ``judge_direction`` (K,) bool: whether its direction is asked (not for lanes shorter
    than ``MIN_SPAN``). A lane supports a point when it is seen at most ``MAX_ABOVE_VP`` image
    heights above it and its line points within ``MAX_VP_ANGLE`` degrees of the ray from its
    lowest point to it (180 when the point lies below that point). Returns (P, K): the angle in
    degrees (0 where not asked), NaN where the lane does not support the point.
    """
    m, q = lines[:, 0], lines[:, 1]
    dx = xv[:, None] - (m * bottom + q)[None, :]
    dy = yv[:, None] - bottom[None, :]
    angle = np.degrees(np.abs(np.arctan2(-m, 1.0)[None, :] - np.arctan2(dx, -dy)))
    angle = np.where(dy >= 0, 180.0, angle)
    angle = np.where(judge_direction[None, :], angle, 0.0)
    ok = (yv[:, None] - top[None, :] <= MAX_ABOVE_VP * image_height) & (angle <= MAX_VP_ANGLE)
    return np.where(ok, angle, np.nan)


def supports(line: np.ndarray, top: float, bottom: float, point: tuple[float, float], image_height: int,
             judge_direction: bool = True) -> float | None:
    """:func:`support_angles` for one lane (near-field ``line`` [m, q], seen from row ``top`` down to
    ``bottom``) and one ``point`` (x, y): the angle (degrees; 0 when not judged), or None when the
    lane does not support it. The pseudo-label checks of ``training/adapt`` judge the drive's
    vanishing point with it."""
    angle = support_angles(np.asarray(line, dtype=np.float64).reshape(1, 2), np.array([top], dtype=np.float64),
                           np.array([bottom], dtype=np.float64), np.array([judge_direction]),
                           np.array([point[0]], dtype=np.float64), np.array([point[1]], dtype=np.float64),
                           image_height)[0, 0]
    return None if np.isnan(angle) else float(angle)


def converging(x: np.ndarray, rows: np.ndarray, confidence: np.ndarray, image_width: int,
               image_height: int, lines: np.ndarray | None = None) -> np.ndarray:
    """Which lanes of one frame pass both rules of the module docstring.

    ``x`` (n, R): source x of each lane at ``rows`` (R,) ascending, NaN where not reported;
    ``confidence`` (n,): existence probabilities. ``lines``: :func:`near_field_lines` of ``x``
    when the caller has them already (the decoder also needs them for rule 3). Returns a bool mask (n,).

    The vanishing point is chosen by consensus (as RANSAC does): every intersection of two
    lanes seen over at least ``MIN_SPAN`` of the image height is a candidate; a lane supports it
    when its direction points there (``MAX_VP_ANGLE``; lanes shorter than ``MIN_SPAN`` are not
    asked) and it is not seen more than ``MAX_ABOVE_VP`` above it. The candidate supported by
    the most lanes wins (then by the smaller summed angle, as MSAC scores, then by the summed
    existence);
    a candidate not supported by its own two lanes (they meet below where they are seen) is
    no vanishing point. Lanes that do not support the winner are dropped; when no candidate
    is valid, only the most confident of the long lanes is kept.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    lines = near_field_lines(x, rows) if lines is None else np.asarray(lines, dtype=np.float64)
    valid = np.isfinite(lines[:, 0])
    keep[valid & (np.abs(lines[:, 0]) > MAX_SLOPE)] = False
    seen = np.isfinite(x)
    top = np.array([rows[np.flatnonzero(r)[0]] if r.any() else np.inf for r in seen])
    bottom = np.array([rows[np.flatnonzero(r)[-1]] if r.any() else -np.inf for r in seen])
    confidence = np.asarray(confidence, dtype=np.float64)
    judged = np.flatnonzero(valid & keep)
    long = [k for k in judged if bottom[k] - top[k] >= MIN_SPAN * image_height]
    if len(long) < 2:
        return keep
    # Every candidate point (lane pairs of ``long``) against every judged lane at once.
    pairs = np.array([(a, b) for ia, a in enumerate(long) for b in long[ia + 1:]])
    m, q = lines[:, 0], lines[:, 1]
    dm = m[pairs[:, 0]] - m[pairs[:, 1]]
    pairs, dm = pairs[np.abs(dm) >= 1e-9], dm[np.abs(dm) >= 1e-9]
    yv = (q[pairs[:, 1]] - q[pairs[:, 0]]) / dm if len(pairs) else np.empty(0)
    xv = m[pairs[:, 0]] * yv + q[pairs[:, 0]] if len(pairs) else np.empty(0)
    angle = support_angles(lines[judged], top[judged], bottom[judged], np.isin(judged, long), xv, yv, image_height)
    support = ~np.isnan(angle)
    column = {k: c for c, k in enumerate(judged)}
    own = support[np.arange(len(pairs)), [column[i] for i in pairs[:, 0]]] & \
        support[np.arange(len(pairs)), [column[j] for j in pairs[:, 1]]] if len(pairs) else np.zeros(0, bool)
    if not own.any():
        strongest = max(long, key=lambda k: confidence[k])
        keep[[k for k in judged if k != strongest]] = False
        return keep
    count = support.sum(axis=1)
    spread = -np.round(np.nansum(angle, axis=1), 1)
    strength = np.where(support, confidence[judged][None, :], 0.0).sum(axis=1)
    order = np.lexsort((strength, spread, count))  # last key first: count, then spread, then strength
    best = next(p for p in order[::-1] if own[p])
    keep[judged[~support[best]]] = False
    return keep
