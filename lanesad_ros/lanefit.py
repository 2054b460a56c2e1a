"""Robust, perspective-aware fit of lane boundaries x(y) in image pixels: the lane hyperbola.

A lane of constant curvature on a flat road, seen by a pinhole camera, is in the image
(Kluge 1994, "Extracting road curvature and orientation from image edge points without
perceptual grouping"; also Wang, Teoh & Shen 2004, "Lane detection and tracking using
B-Snake", sec. 2)::

    x(y) = a + b * (y - y_h) / S + c * S / (y - y_h),        y > y_h

with ``y_h`` the horizon row, ``a`` the column of the lane's vanishing point, ``b`` its
lateral offset and ``c`` the road curvature (``S`` only scales the columns for
conditioning). Its second derivative ``2 c S / (y - y_h)^3`` keeps one sign below the
horizon, so a fitted lane can bend one way only: no S-curve, no loop (x is a function of
y), and its curvature grows towards the horizon, so no curl at the near end. Its slope
``dx/dy`` is monotone in y, so the lateral direction changes at most once.

The fit, vectorised over all lanes of a frame (numpy only):

1. RANSAC (Fischler & Bolles 1981) with MSAC scoring (Torr & Zisserman 2000): exact
   hyperbolas through fixed, stratified triples of a lane's rows (one in each third of its
   seen extent) for a few horizons relative to its top; the one with the most support wins.
   Residuals are normal distances to the curve (x error times cos of the lane's angle), so
   a lane that turns nearly horizontal near the horizon is not cut short.
2. Two reweighted least-squares passes on the inliers over a grid of horizons. The frame's
   lanes share a horizon (one road plane): the grid row with the least total error over all
   curved lanes is the frame's horizon, and each lane may depart from it by ``band_rows``.
3. Degree from the visible length: a lane with fewer than ``min_curve_points`` inliers, or
   spanning fewer than ``min_curve_span`` of the image height, gets a straight line.

Measured on the 13,795 lanes of the 3,626 TuSimple training labels (test_lanefit.py): the
median lane refits with a largest normal error of 0.4 px; see the tests for the bounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Stratified row triples for RANSAC, as fractions of a lane's seen points (bottom to top
# order does not matter): one from each third, on a fixed grid so decoding is deterministic.
# The middle point cycles with the outer ones, so no single row is in every triple.
_LOW = (0.0, 0.1, 0.2, 0.3)
_MID = (0.4, 0.5, 0.6)
_HIGH = (0.7, 0.8, 0.9, 1.0)
TRIPLES = np.array([(lo, _MID[(i + k) % 3], hi) for i, lo in enumerate(_LOW) for k, hi in enumerate(_HIGH)])
# RANSAC horizons, as multiples of the lane's seen row span above its top row: a tight bend
# near the horizon (0.03) to an almost straight lane (8).
RANSAC_HORIZONS = np.array([0.03, 0.2, 2.0])


@dataclass(frozen=True)
class FitTables:
    """Basis functions for one set of rows and horizon grid; computed once per image size.

    ``y_fit`` (R,): the source row each point was read at; ``y_out`` (R,): the rows the fit is
    sampled at. ``horizons`` (K,): candidate horizon rows, ascending. ``scale``: S above.
    ``phi_fit``/``dphi_fit``/``phi_out`` (K, R, 3): basis and its d/dy at the fit rows, basis at
    the output rows (rows at or above a horizon are clamped ``margin`` rows below it; a fit never
    uses them). ``products`` (R, 6, K): the distinct entries of the outer products of
    ``phi_fit`` (upper triangle, row by row) for the normal equations, ``basis_flat`` (R, 3, K)
    ``phi_fit`` laid out alike; ``coarse`` indexes every third grid horizon (the first pass),
    with its own ``products_coarse`` (R, 6 Kc) and ``basis_coarse`` (R, 3 Kc).
    """

    y_fit: np.ndarray
    y_out: np.ndarray
    horizons: np.ndarray
    scale: float
    margin: float
    phi_fit: np.ndarray
    dphi_fit: np.ndarray
    phi_out: np.ndarray
    products: np.ndarray
    basis_flat: np.ndarray
    coarse: np.ndarray
    products_coarse: np.ndarray
    basis_coarse: np.ndarray


def _basis(y: np.ndarray, horizon: np.ndarray, scale: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Basis [1, t/S, S/t] and its derivative d/dy, t = y - horizon clamped to >= margin; shapes (..., 3)."""
    t = np.maximum(y - horizon, margin)
    phi = np.empty(t.shape + (3,))
    dphi = np.empty(t.shape + (3,))
    phi[..., 0] = 1.0
    np.multiply(t, 1.0 / scale, out=phi[..., 1])
    np.divide(scale, t, out=phi[..., 2])
    dphi[..., 0] = 0.0
    dphi[..., 1] = 1.0 / scale
    np.divide(phi[..., 2], t, out=dphi[..., 2])
    dphi[..., 2] *= -1.0
    return phi, dphi


def make_tables(y_fit: np.ndarray, y_out: np.ndarray, horizons: np.ndarray, image_height: float) -> FitTables:
    """Precompute the basis for rows ``y_fit``/``y_out`` (source px) and a horizon grid (source rows)."""
    y_fit = np.asarray(y_fit, dtype=np.float64)
    y_out = np.asarray(y_out, dtype=np.float64)
    horizons = np.sort(np.asarray(horizons, dtype=np.float64))
    scale = max(float(image_height) / 2.0, 1.0)
    margin = max(float(image_height) / 150.0, 1.0)
    phi_fit, dphi_fit = _basis(y_fit[None, :], horizons[:, None], scale, margin)
    phi_out, _ = _basis(y_out[None, :], horizons[:, None], scale, margin)
    i, j = np.triu_indices(3)
    products = (phi_fit[..., i] * phi_fit[..., j]).transpose(1, 2, 0)  # (R, 6, K): the 6 distinct entries
    basis = phi_fit.transpose(1, 2, 0)  # (R, 3, K)
    coarse = np.arange(0, len(horizons), 3)
    rows = len(y_fit)
    return FitTables(y_fit=y_fit, y_out=y_out, horizons=horizons, scale=scale, margin=margin, phi_fit=phi_fit,
                     dphi_fit=dphi_fit, phi_out=phi_out, products=np.ascontiguousarray(products),
                     basis_flat=np.ascontiguousarray(basis), coarse=coarse,
                     products_coarse=np.ascontiguousarray(products[..., coarse]).reshape(rows, -1),
                     basis_coarse=np.ascontiguousarray(basis[..., coarse]).reshape(rows, -1))


def horizon_grid(image_height: float, crop_row: float) -> np.ndarray:
    """Candidate horizon rows: every h/160 from 0.3 h above the crop row to 0.4 h below it,
    plus a few far above the image (near-straight lanes). The crop (``Preprocessor.crop_top``)
    is chosen to cut the sky, so the horizon lies near it."""
    h = float(image_height)
    fine = np.arange(crop_row - 0.3 * h, crop_row + 0.4 * h + 1e-9, h / 160.0)
    far = crop_row - h * np.array([10.0, 4.0, 2.0, 1.0, 0.6])
    return np.concatenate([far, fine])


@dataclass
class LaneFit:
    """Result for n lanes over R rows: ``x_out`` (n, R) fitted x at ``y_out``; ``inliers`` (n, R)
    rows that support the fit; ``horizon`` (n,) the horizon row used; ``coef`` (n, 3) of the
    basis [1, t/S, S/t]; ``curved`` (n,) whether the curvature term was fitted (else a line)."""

    x_out: np.ndarray
    inliers: np.ndarray
    horizon: np.ndarray
    coef: np.ndarray
    curved: np.ndarray


def fit_lanes(x: np.ndarray, weight: np.ndarray, tables: FitTables, *, inlier_px: float,
              min_curve_points: int = 8, min_curve_span: float = 0.1, band_rows: float | None = None) -> LaneFit:
    """Fit the lane hyperbola to every lane of a frame at once.

    ``x`` (n, R): source x of each lane at ``tables.y_fit`` (any value where unseen);
    ``weight`` (n, R): >= 0, 0 where the lane was not seen (e.g. its peak probability).
    ``inlier_px``: a row further than this (normal distance, source px) from the fit is an
    outlier. ``band_rows``: how far a lane's horizon may be from the frame's (default 3 % of
    the image height, the spread seen between lanes of one TuSimple frame).
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    n, rows = x.shape
    height = 2.0 * tables.scale
    band = 0.03 * height if band_rows is None else float(band_rows)
    seen = weight > 0
    x = np.where(seen, x, 0.0)
    # Least squares on every seen row first; a lane it leaves with a row beyond half the
    # outlier distance (an outlier may have pulled the fit towards itself) starts over from RANSAC.
    coef, k_lane, curved, frame = _refit(x, weight * seen, seen, tables, min_curve_points, min_curve_span, band, None)
    fitted, slope = _evaluate(coef, k_lane, tables)
    distance = np.abs(x - fitted) / np.sqrt(1.0 + slope ** 2)
    inliers = seen & (distance <= inlier_px)
    rough = (seen & (distance > 0.5 * inlier_px)).any(axis=1)
    if rough.any():
        inliers[rough], slope[rough] = _ransac(x[rough], seen[rough], tables, inlier_px)
        w = weight * inliers / (1.0 + slope ** 2)
        coef, k_lane, curved, frame = _refit(x, w, inliers, tables, min_curve_points, min_curve_span, band, None)
        fitted, slope = _evaluate(coef, k_lane, tables)
        inliers = seen & (np.abs(x - fitted) <= inlier_px * np.sqrt(1.0 + slope ** 2))
    w = weight * inliers / (1.0 + slope ** 2)
    coef, k_lane, curved, frame = _refit(x, w, inliers, tables, min_curve_points, min_curve_span, band, frame)
    fitted, slope = _evaluate(coef, k_lane, tables)
    inliers = seen & (np.abs(x - fitted) <= inlier_px * np.sqrt(1.0 + slope ** 2))
    x_out = (tables.phi_out[k_lane] @ coef[:, :, None])[..., 0]
    return LaneFit(x_out=x_out, inliers=inliers, horizon=tables.horizons[k_lane], coef=coef, curved=curved)


def _evaluate(coef: np.ndarray, k_lane: np.ndarray, tables: FitTables) -> tuple[np.ndarray, np.ndarray]:
    """Fitted x and slope dx/dy (n, R) at the fit rows, for coefficients (n, 3) at grid horizons (n,)."""
    return (tables.phi_fit[k_lane] @ coef[:, :, None])[..., 0], (tables.dphi_fit[k_lane] @ coef[:, :, None])[..., 0]


def _ransac(x: np.ndarray, seen: np.ndarray, tables: FitTables, inlier_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Best-supported exact hyperbola per lane -> (inlier mask (n, R), its slope dx/dy (n, R))."""
    n, rows = x.shape
    y = tables.y_fit
    count = seen.sum(axis=1)
    rank = np.rint(TRIPLES[None] * np.maximum(count - 1, 0)[:, None, None])  # (n, M, 3)
    cum = np.cumsum(seen, axis=1)
    idx = (cum[:, None, None, :] > rank[..., None]).argmax(axis=-1)  # row of the rank-th seen point
    yp = y[idx]  # (n, M, 3)
    xp = np.take_along_axis(x, idx.reshape(n, -1), axis=1).reshape(idx.shape)
    top, bottom = _extent(seen, y)
    span = np.maximum(bottom - top, tables.margin)
    horizon = top[:, None] - np.maximum(RANSAC_HORIZONS[None, :] * span[:, None], tables.margin)  # (n, Kc)
    # Exact hyperbola through the three points, x = a + b p + c q (p = t/S, q = S/t), by
    # eliminating a and solving the 2x2 system for (b, c) with Cramer's rule.
    t = np.maximum(yp[:, None, :, :] - horizon[:, :, None, None], tables.margin)  # (n, Kc, M, 3)
    p, q = t / tables.scale, tables.scale / t
    dp1, dp2 = p[..., 1] - p[..., 0], p[..., 2] - p[..., 0]
    dq1, dq2 = q[..., 1] - q[..., 0], q[..., 2] - q[..., 0]
    dx1, dx2 = (xp[..., 1] - xp[..., 0])[:, None], (xp[..., 2] - xp[..., 0])[:, None]
    det = dp1 * dq2 - dp2 * dq1
    ok = np.abs(det) > 1e-12
    det = np.where(ok, det, 1.0)
    b = np.where(ok, (dx1 * dq2 - dx2 * dq1) / det, 0.0)
    c = np.where(ok, (dp1 * dx2 - dp2 * dx1) / det, 0.0)
    coef = np.empty(b.shape + (3,))  # (n, Kc, M, 3)
    coef[..., 0] = xp[:, None, :, 0] - b * p[..., 0] - c * q[..., 0]
    coef[..., 1] = b
    coef[..., 2] = c
    phi, dphi = _basis(y[None, None, :], horizon[:, :, None], tables.scale, tables.margin)  # (n, Kc, R, 3)
    pred = coef @ np.swapaxes(phi, -1, -2)  # (n, Kc, M, R)
    slope = coef @ np.swapaxes(dphi, -1, -2)
    dist2 = (x[:, None, None, :] - pred) ** 2 / (1.0 + slope ** 2)
    cost = (np.minimum(dist2, inlier_px ** 2) @ seen[:, None, :, None].astype(np.float64))[..., 0]  # MSAC
    best = cost.reshape(n, -1).argmin(axis=1)
    k, m = np.unravel_index(best, cost.shape[1:])
    lanes = np.arange(n)
    return seen & (dist2[lanes, k, m] <= inlier_px ** 2), slope[lanes, k, m]


def _extent(mask: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom row (n,) of each lane's True entries; the last row for an empty lane."""
    any_ = mask.any(axis=1)
    first = mask.argmax(axis=1)
    last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
    return np.where(any_, y[first], y[-1]), np.where(any_, y[last], y[-1])


def _solve_sym3(m: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve symmetric 3x3 systems by cofactors -> (x (n, 3, K), solvable (n, K)).

    ``m`` (n, 6, K): the upper triangle a b c / d e / f of each matrix; ``r`` (n, 3, K). Far
    cheaper than ``np.linalg.solve`` for hundreds of tiny systems; singular ones give x = 0.
    """
    a, b, c, d, e, f = m[:, 0], m[:, 1], m[:, 2], m[:, 3], m[:, 4], m[:, 5]
    c00, c01, c02 = d * f - e * e, c * e - b * f, b * e - c * d
    c11, c12, c22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * c00 + b * c01 + c * c02
    ok = np.abs(det) > 1e-10 * (np.abs(a * d * f) + 1e-300)
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    r0, r1, r2 = r[:, 0], r[:, 1], r[:, 2]
    x = np.empty(r.shape)
    x[:, 0] = c00 * r0 + c01 * r1 + c02 * r2
    x[:, 1] = c01 * r0 + c11 * r1 + c12 * r2
    x[:, 2] = c02 * r0 + c12 * r1 + c22 * r2
    x *= inv[:, None]
    return x, ok


def _refit(x: np.ndarray, w: np.ndarray, inliers: np.ndarray, tables: FitTables, min_curve_points: int,
           min_curve_span: float, band: float,
           frame: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None]:
    """Weighted least squares of every lane for many horizons, then each lane's horizon ->
    (coef (n, 3), grid index (n,), curved (n,), the frame's horizon row or None).

    First pass (``frame`` None), on every third grid horizon: the frame's horizon is the one
    with the least total error over the curved lanes. Second pass, on the same horizons plus
    the whole grid within ``band`` of the frame's: each lane takes its best horizon in that
    band whose fit turns back sideways no further than the lane's inliers do (+1 px; measured
    on the first pass's inliers, so a lane whose far end really turns back keeps those rows).
    """
    n = x.shape[0]
    ks = tables.coarse
    wx = w * x
    normal = (w @ tables.products_coarse).reshape(n, 6, -1)
    rhs = (wx @ tables.basis_coarse).reshape(n, 3, -1)
    if frame is not None:
        lo, hi = np.searchsorted(tables.horizons, [frame - band, frame + band + 1e-9])
        ks = np.concatenate([ks, np.arange(lo, hi)])
        normal = np.concatenate([normal, np.einsum("nr,rek->nek", w, tables.products[..., lo:hi])], axis=2)
        rhs = np.concatenate([rhs, np.einsum("nr,rek->nek", wx, tables.basis_flat[..., lo:hi])], axis=2)
    horizons = tables.horizons[ks]
    top, bottom = _extent(inliers, tables.y_fit)
    curved = (inliers.sum(axis=1) >= min_curve_points) & (bottom - top >= min_curve_span * 2.0 * tables.scale)
    # A straight lane pins the curvature coefficient to 0 (unit row/column in the normal equations).
    line = ~curved
    normal[line, 2] = 0.0
    normal[line, 4] = 0.0
    normal[line, 5] = 1.0
    rhs[line, 2] = 0.0
    coef, ok = _solve_sym3(normal, rhs)  # (n, 3, K)
    sse = (wx * x).sum(axis=1)[:, None] - (coef * rhs).sum(axis=1)  # at the optimum c'Ac = c'r
    valid = ok & (horizons[None, :] <= (top - tables.margin)[:, None])
    fit_back = None
    if frame is None:
        good = valid
        if curved.any():
            frame = float(horizons[np.where(valid[curved], sse[curved], 1e30).sum(axis=0).argmin()])
    else:
        fit_back = _turn_back(coef, horizons, tables, top, bottom)
        good = valid & (fit_back <= turn_back(x, inliers)[:, None] + 1.0)
    cost = np.where(good, sse, np.inf)
    if frame is not None:
        in_band = np.where(np.abs(horizons - frame)[None, :] <= band, cost, np.inf)
        cost = np.where(np.isfinite(in_band).any(axis=1)[:, None], in_band, cost)
    # A lane with no good horizon takes the one that turns back least (lines never do).
    stuck = ~np.isfinite(cost).any(axis=1)
    if stuck.any():
        fit_back = _turn_back(coef, horizons, tables, top, bottom) if fit_back is None else fit_back
        cost[stuck] = np.where(valid[stuck], fit_back[stuck], np.inf)
    best = cost.argmin(axis=1)
    return coef[np.arange(n), :, best], ks[best], curved, frame


def _turn_back(coef: np.ndarray, horizons: np.ndarray, tables: FitTables, top: np.ndarray,
               bottom: np.ndarray) -> np.ndarray:
    """How far (px) each fit (n, 3, K) with ``horizons`` (K,) turns back sideways between rows ``top`` and ``bottom``
    (n,): its slope b/S - c S/t^2 is monotone in t, so it changes sign at most once, at
    t* = S sqrt(c / b); the amount is the smaller of the two sideways runs either side of t*."""
    a, b, c = coef[:, 0], coef[:, 1], coef[:, 2]
    s = tables.scale
    t_top = np.maximum(top[:, None] - horizons[None, :], tables.margin)
    t_bottom = np.maximum(bottom[:, None] - horizons[None, :], tables.margin)
    ratio = np.where(b != 0, c / np.where(b != 0, b, 1.0), -1.0)
    t_star = s * np.sqrt(np.maximum(ratio, 0.0))
    inside = (ratio > 0) & (t_star > t_top) & (t_star < t_bottom)
    t_star = np.where(inside, t_star, t_top)

    def x_at(t):
        return a + b * t / s + c * s / t

    x_star = x_at(t_star)
    back = np.minimum(np.abs(x_at(t_top) - x_star), np.abs(x_at(t_bottom) - x_star))
    return np.where(inside, back, 0.0)


def turn_back(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """How far (px) lanes turn back sideways: ``x`` (..., N) listed along each lane (``mask``
    picks the points to use). The smaller of the largest drop below the running maximum and
    the largest rise above the running minimum: 0 for a lane drifting one way, the size of
    the smaller leg for one that bends past vertical (or zigzags)."""
    x = np.asarray(x, dtype=np.float64)
    mask = np.ones(x.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    high = np.maximum.accumulate(np.where(mask, x, -np.inf), axis=-1)
    low = np.minimum.accumulate(np.where(mask, x, np.inf), axis=-1)
    back = np.where(mask, high - x, 0.0).max(axis=-1, initial=0.0)
    forth = np.where(mask, x - low, 0.0).max(axis=-1, initial=0.0)
    return np.minimum(back, forth)


def lateral_reversals(x: np.ndarray, hysteresis_px: float = 3.0) -> int:
    """How often a lane's x, listed along the lane, turns back by more than ``hysteresis_px``
    from its last extreme (a zigzag count: 0 for a lane that keeps drifting one way, 1 for a
    bend past vertical, 2+ for an S-curve or a loop). Pixel quantisation stays below 3 px."""
    return _zigzag(np.asarray(x, dtype=np.float64), hysteresis_px)


def slope_reversals(x: np.ndarray, y: np.ndarray, chord_rows: float = 30.0, hysteresis: float = 0.1) -> int:
    """How often the bend of a lane changes sign: reversals of its slope dx/dy, measured over
    chords of about ``chord_rows`` rows, by more than ``hysteresis``. ``x``, ``y`` (N,) list the
    lane's points in order along it. 0 for a lane bending one way (or straight)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 2:
        return 0
    step = max(int(round(chord_rows / max(float(np.median(np.abs(np.diff(y)))), 1e-9))), 1)
    if len(y) <= step + 1:
        return 0
    slope = (x[step:] - x[:-step]) / (y[step:] - y[:-step])
    return _zigzag(slope, hysteresis)


def _zigzag(values: np.ndarray, hysteresis: float) -> int:
    count, direction = 0, 0
    high = low = values[0] if len(values) else 0.0
    for value in values[1:]:
        if direction >= 0 and value > high:
            high = value
        if direction <= 0 and value < low:
            low = value
        if direction == 0:
            if high - low > hysteresis:
                direction = 1 if value == high else -1
                high = low = value
        elif direction == 1 and high - value > hysteresis:
            count, direction, low = count + 1, -1, value
        elif direction == -1 and value - low > hysteresis:
            count, direction, high = count + 1, 1, value
    return count
