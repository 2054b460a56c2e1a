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
_LOW = (0.0, 0.08, 0.16, 0.24, 0.32)
_MID = (0.4, 0.5, 0.6)
_HIGH = (0.68, 0.76, 0.84, 0.92, 1.0)
TRIPLES = np.array([(lo, _MID[(i + k) % 3], hi) for i, lo in enumerate(_LOW) for k, hi in enumerate(_HIGH)])
# RANSAC horizons, as multiples of the lane's seen row span above its top row: a tight bend
# near the horizon (0.03) to an almost straight lane (8).
RANSAC_HORIZONS = np.array([0.03, 0.2, 2.0])
_SLOPE_POWER = 1.0


@dataclass(frozen=True)
class FitTables:
    """Basis functions for one set of rows and horizon grid; computed once per image size.

    ``y_fit`` (R,): the source row each point was read at; ``y_out`` (R,): the rows the fit is
    sampled at. ``horizons`` (K,): candidate horizon rows, ascending. ``scale``: S above.
    ``phi_fit``/``dphi_fit``/``phi_out`` (K, R, 3): basis and its d/dy at the fit rows, basis at
    the output rows (rows at or above a horizon are clamped ``margin`` rows below it; a fit never
    uses them). ``products`` (R, K * 9): outer products of ``phi_fit`` for the normal equations.
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


def _basis(y: np.ndarray, horizon: np.ndarray, scale: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Basis [1, t/S, S/t] and its derivative d/dy, t = y - horizon clamped to >= margin; shapes (..., 3)."""
    t = np.maximum(y - horizon, margin)
    ones = np.ones_like(t)
    phi = np.stack([ones, t / scale, scale / t], axis=-1)
    dphi = np.stack([0.0 * ones, ones / scale, -scale / t ** 2], axis=-1)
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
    products = (phi_fit[..., :, None] * phi_fit[..., None, :]).transpose(1, 0, 2, 3).reshape(len(y_fit), -1)
    basis_flat = phi_fit.transpose(1, 0, 2).reshape(len(y_fit), -1)
    return FitTables(y_fit=y_fit, y_out=y_out, horizons=horizons, scale=scale, margin=margin, phi_fit=phi_fit,
                     dphi_fit=dphi_fit, phi_out=phi_out, products=np.ascontiguousarray(products),
                     basis_flat=np.ascontiguousarray(basis_flat))


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
    inliers, slope = _ransac(x, seen, tables, inlier_px)
    coef = np.zeros((n, 3))
    k_lane = np.zeros(n, dtype=np.intp)
    curved = np.zeros(n, dtype=bool)
    for _ in range(2):
        w = weight * inliers / (1.0 + slope ** 2) ** _SLOPE_POWER
        coef, k_lane, curved = _refit(x, w, inliers, tables, min_curve_points, min_curve_span, band)
        fitted = (tables.phi_fit[k_lane] @ coef[:, :, None])[..., 0]
        slope = (tables.dphi_fit[k_lane] @ coef[:, :, None])[..., 0]
        inliers = seen & (np.abs(x - fitted) <= inlier_px * np.sqrt(1.0 + slope ** 2))
    x_out = (tables.phi_out[k_lane] @ coef[:, :, None])[..., 0]
    return LaneFit(x_out=x_out, inliers=inliers, horizon=tables.horizons[k_lane], coef=coef, curved=curved)


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
    a = xp[:, None, :, 0] - b * p[..., 0] - c * q[..., 0]
    coef = np.stack([a, b, c], axis=-1)  # (n, Kc, M, 3)
    phi, dphi = _basis(y[None, None, :], horizon[:, :, None], tables.scale, tables.margin)  # (n, Kc, R, 3)
    pred = coef @ np.swapaxes(phi, -1, -2)  # (n, Kc, M, R)
    slope = coef @ np.swapaxes(dphi, -1, -2)
    dist2 = (x[:, None, None, :] - pred) ** 2 / (1.0 + slope ** 2)
    cost = (np.minimum(dist2, inlier_px ** 2) @ seen[:, None, :, None].astype(np.float64))[..., 0]  # MSAC (n, Kc, M)
    best = cost.reshape(n, -1).argmin(axis=1)
    k, m = np.unravel_index(best, cost.shape[1:])
    lanes = np.arange(n)
    inliers = seen & (dist2[lanes, k, m] <= inlier_px ** 2)
    return inliers, slope[lanes, k, m]


def _extent(mask: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom row (n,) of each lane's True entries; the last row for an empty lane."""
    any_ = mask.any(axis=1)
    first = mask.argmax(axis=1)
    last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
    return np.where(any_, y[first], y[-1]), np.where(any_, y[last], y[-1])


def _solve_sym3(m: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve symmetric 3x3 systems (..., 3, 3) x = (..., 3) by cofactors -> (x, solvable mask).

    Far cheaper than ``np.linalg.solve`` for hundreds of tiny systems; singular ones give x = 0.
    """
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 1], m[..., 1, 2], m[..., 2, 2]
    c00, c01, c02 = d * f - e * e, c * e - b * f, b * e - c * d
    c11, c12, c22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * c00 + b * c01 + c * c02
    scale = np.abs(a * d * f) + 1e-300
    ok = np.abs(det) > 1e-10 * scale
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    r0, r1, r2 = r[..., 0], r[..., 1], r[..., 2]
    x = np.stack([(c00 * r0 + c01 * r1 + c02 * r2) * inv,
                  (c01 * r0 + c11 * r1 + c12 * r2) * inv,
                  (c02 * r0 + c12 * r1 + c22 * r2) * inv], axis=-1)
    return x, ok


def _refit(x: np.ndarray, w: np.ndarray, inliers: np.ndarray, tables: FitTables, min_curve_points: int,
           min_curve_span: float, band: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares for every lane and every grid horizon, the frame's horizon,
    each lane's best horizon near it -> (coef (n, 3), grid index (n,), curved (n,))."""
    n = x.shape[0]
    k_count = len(tables.horizons)
    normal = (w @ tables.products).reshape(n, k_count, 3, 3)
    rhs = ((w * x) @ tables.basis_flat).reshape(n, k_count, 3)
    top, bottom = _extent(inliers, tables.y_fit)
    curved = (inliers.sum(axis=1) >= min_curve_points) & (bottom - top >= min_curve_span * 2.0 * tables.scale)
    # A straight lane pins the curvature coefficient to 0 (unit row/column in the normal equations).
    line = ~curved
    normal[line, :, 2, :] = 0.0
    normal[line, :, :, 2] = 0.0
    normal[line, :, 2, 2] = 1.0
    rhs[line, :, 2] = 0.0
    coef, ok = _solve_sym3(normal, rhs)  # (n, K, 3)
    sse = (w * x * x).sum(axis=1)[:, None] - (coef * rhs).sum(axis=-1)  # at the optimum c'Ac = c'r
    valid = ok & (tables.horizons[None, :] <= (top - tables.margin)[:, None])
    sse = np.where(valid, sse, np.inf)
    if curved.any():
        frame_cost = np.where(valid[curved], sse[curved], 1e30).sum(axis=0)
        frame_k = int(frame_cost.argmin())
        near = np.abs(tables.horizons - tables.horizons[frame_k]) <= band
        allowed = valid & near[None, :]
        none_near = ~allowed.any(axis=1)
        allowed[none_near] = valid[none_near]
        sse = np.where(allowed, sse, np.inf)
    k_lane = sse.argmin(axis=1)
    return coef[np.arange(n), k_lane], k_lane, curved
