"""A lane boundary on the ground: the cubic y(x) = c0 + c1 x + c2 x^2 + c3 x^3 and its covariance.

Frame: the ground frame of the projector (REP 103: x forward, y left, metres, the road taken
as the plane z = 0). The cubic is the lane model of Mobileye-style interfaces (a clothoid's
Taylor expansion: c0 offset, c1 heading, 2 c2 curvature, 6 c3 curvature rate; Dickmanns &
Mysliwetz 1992, "Recursive 3-D road and relative ego-state recognition", IEEE PAMI 14(2)).

The fit is weighted least squares of the boundary's ground points with a Gaussian prior on
c2 and c3 (roads bend gently: a short or straight lane gets no made-up curve, and its
uncertainty stays honest instead of a degree being dropped). Weights come from the camera
model: each point's lateral error per pixel of image error is the derivative of the
pixel -> ground projection (numerically, both image directions), taken across the boundary
(y at fixed x), so a pixel near the horizon, which moves the point metres, weighs little
next to one near the bonnet. The pixel noise is estimated from the residuals with a floor
(``pixel_std_floor``); the detector's points are samples of one fitted image curve, so their
errors are correlated along the lane, and the covariance counts them as at most
``independent_points`` measurements. The camera's pitch uncertainty (the body pitching on
its suspension) moves every point together: its effect on the coefficients is taken from a
refit with the pitch moved (projectors with a mounting only) and added as a rank-one term.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lanesad_ros.camera import GroundProjector

_X_SCALE = 20.0  # metres: x / _X_SCALE keeps the normal equations well conditioned
_SCALES = _X_SCALE ** -np.arange(4.0)  # c_k = scaled c_k * _SCALES[k]
_PIXEL_STEP = 0.5  # px, central differences of the projection
_PITCH_STEP = 1e-3  # rad, difference of the pitch term


@dataclass(frozen=True)
class BoundaryFitConfig:
    """How boundaries are fitted; defaults suit 720p-1080p cameras on roads and highways.

    ``pixel_std_floor``: the least image noise assumed (px, 1 sigma) whatever the residuals say.
    ``independent_points``: the most measurements the points of one boundary count as.
    ``pitch_std_rad``: camera pitch uncertainty (1 sigma) beyond the calibration; 0 = none.
    ``curvature_prior``: 1 sigma of the curvature (2 c2, 1/m) a boundary is expected to have;
    ``curvature_rate_prior``: likewise of its rate (6 c3, 1/m^2).
    ``min_points``: fewer ground points give no fit. ``std_step_m``: spacing of the sampled lateral std.
    """

    pixel_std_floor: float = 1.5
    independent_points: int = 10
    pitch_std_rad: float = 0.004
    curvature_prior: float = 0.02
    curvature_rate_prior: float = 1e-3
    min_points: int = 4
    std_step_m: float = 5.0

    def __post_init__(self) -> None:
        for name in ("pixel_std_floor", "curvature_prior", "curvature_rate_prior", "std_step_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"BoundaryFitConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.pitch_std_rad >= 0:
            raise ValueError(f"BoundaryFitConfig.pitch_std_rad must be >= 0, got {self.pitch_std_rad}")
        if self.min_points < 2 or self.independent_points < 2:
            raise ValueError(f"BoundaryFitConfig needs min_points >= 2 and independent_points >= 2, got "
                             f"{self.min_points}, {self.independent_points}")


@dataclass(frozen=True)
class BoundaryFit:
    """One boundary on the ground: ``coef`` (4,) c0..c3 (m, 1, 1/m, 1/m^2), ``covariance`` (4, 4)
    of them, the valid range ``x_min``..``x_max`` (m ahead), the pixel noise used (px, 1 sigma)
    and the number of ground points fitted."""

    coef: np.ndarray
    covariance: np.ndarray
    x_min: float
    x_max: float
    pixel_std: float
    n_points: int

    def y(self, x) -> np.ndarray:
        """Lateral position (m, + left) at distances ``x`` (m ahead)."""
        return np.polynomial.polynomial.polyval(np.asarray(x, np.float64), self.coef)

    def lateral_std(self, x) -> np.ndarray:
        """1-sigma lateral uncertainty (m) of y at distances ``x``: sqrt(phi^T C phi), phi = (1, x, x^2, x^3)."""
        phi = np.vander(np.atleast_1d(np.asarray(x, np.float64)), 4, increasing=True)
        return np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", phi, self.covariance, phi), 0.0))

    def std_samples(self, step_m: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
        """(distances, lateral std) at x_min, every multiple of ``step_m`` inside the range, and x_max."""
        inner = np.arange(np.floor(self.x_min / step_m) + 1, np.ceil(self.x_max / step_m)) * step_m
        xs = np.unique(np.concatenate([[self.x_min], inner, [self.x_max]]))
        return xs, self.lateral_std(xs)


def _design(x: np.ndarray) -> np.ndarray:
    return np.vander(x / _X_SCALE, 4, increasing=True)


def _solve(x: np.ndarray, y: np.ndarray, inv_var: np.ndarray, prior_precision: np.ndarray):
    """MAP coefficients (scaled) and the information matrix of weighted least squares with a prior."""
    a = _design(x)
    information = a.T @ (a * inv_var[:, None]) + np.diag(prior_precision)
    return np.linalg.solve(information, a.T @ (inv_var * y)), information


def _project_with_sensitivity(projector: GroundProjector, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground (x, y) of each pixel (N, 2) and d(ground x, y) / d(pixel u, v) there (N, 2, 2), by
    central differences in one projection call; NaN where a point or a neighbour leaves the road."""
    steps = np.array([[0.0, 0.0], [_PIXEL_STEP, 0.0], [-_PIXEL_STEP, 0.0], [0.0, _PIXEL_STEP], [0.0, -_PIXEL_STEP]])
    ground = projector.image_to_ground((pixels[None] + steps[:, None]).reshape(-1, 2), keep_all=True)
    ground = ground[:, :2].reshape(5, len(pixels), 2)
    jac = np.stack([ground[1] - ground[2], ground[3] - ground[4]], axis=2) / (2 * _PIXEL_STEP)
    return ground[0], jac


def fit_boundary(image_points: np.ndarray, projector: GroundProjector,
                 config: BoundaryFitConfig = BoundaryFitConfig()) -> BoundaryFit | None:
    """Fit one boundary's cubic on the ground from its (N, 2) source-image pixels (x = column, y = row).

    Returns None when fewer than ``config.min_points`` pixels land on the road ahead (at or above
    the horizon, beyond the projector's range, behind the vehicle origin).
    """
    pixels = np.asarray(image_points, np.float64).reshape(-1, 2)
    if len(pixels) < config.min_points:
        return None
    ground, jac = _project_with_sensitivity(projector, pixels)
    ok = np.all(np.isfinite(ground), axis=1) & np.all(np.isfinite(jac), axis=(1, 2)) & (ground[:, 0] > 0)
    if ok.sum() < config.min_points:
        return None
    pixels, ground, jac = pixels[ok], ground[ok], jac[ok]
    x, y = ground[:, 0], ground[:, 1]
    prior = np.array([0.0, 0.0, (2.0 / config.curvature_prior) ** 2, (6.0 / config.curvature_rate_prior) ** 2])
    prior = prior * _SCALES ** 2  # precision of the scaled coefficients
    # Lateral error per pixel: the ground displacement of a pixel step, across the boundary (y at
    # fixed x: dy - y'(x) dx), for both image directions; the slope from a first, unweighted pass.
    scaled, _ = _solve(x, y, np.ones_like(x), prior * 1e-6)
    for _ in range(2):
        slope = np.polynomial.polynomial.polyval(x, np.polynomial.polynomial.polyder(scaled * _SCALES))
        across = jac[:, 1, :] - slope[:, None] * jac[:, 0, :]  # (N, 2) metres per pixel
        per_pixel_var = np.maximum(np.sum(across ** 2, axis=1), 1e-10)
        scaled, _ = _solve(x, y, 1.0 / (config.pixel_std_floor ** 2 * per_pixel_var), prior)
    residual = y - _design(x) @ scaled
    dof = max(len(x) - 4, 1)
    pixel_std = max(config.pixel_std_floor, float(np.sqrt(np.sum(residual ** 2 / per_pixel_var) / dof)))
    # Correlated points: each counts as n / min(n, independent_points) of a measurement.
    inflation = len(x) / min(len(x), config.independent_points)
    inv_var = 1.0 / (pixel_std ** 2 * inflation * per_pixel_var)
    scaled, information = _solve(x, y, inv_var, prior)
    covariance = np.linalg.inv(information)
    if config.pitch_std_rad > 0 and projector.mounting is not None:
        mounting = replace(projector.mounting, pitch_rad=projector.mounting.pitch_rad + _PITCH_STEP)
        moved = GroundProjector(projector.camera, mounting=mounting,
                                max_range_m=projector.max_range_m).image_to_ground(pixels, keep_all=True)
        both = np.all(np.isfinite(moved[:, :2]), axis=1)
        if both.sum() >= config.min_points:
            scaled_moved, _ = _solve(moved[both, 0], moved[both, 1], inv_var[both], prior)
            if not np.all(both):  # the same points on both sides of the difference
                scaled_here, _ = _solve(x[both], y[both], inv_var[both], prior)
            else:
                scaled_here = scaled
            d = (scaled_moved - scaled_here) / _PITCH_STEP
            covariance = covariance + config.pitch_std_rad ** 2 * np.outer(d, d)
    coef = scaled * _SCALES
    covariance = covariance * np.outer(_SCALES, _SCALES)
    return BoundaryFit(coef=coef, covariance=0.5 * (covariance + covariance.T), x_min=float(x.min()),
                       x_max=float(x.max()), pixel_std=pixel_std, n_points=int(len(x)))
