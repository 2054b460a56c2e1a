"""Road geometry of a synthetic scene: the perspective road model (``_Scene``), lane boundaries (``_Lane``),
lane shapes taken from real TuSimple labels, and the fixed-point / noise helpers the painters share.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

_SHIFT = 3  # fixed-point bits for sub-pixel cv2 drawing


_SCALE = 1 << _SHIFT


@dataclass
class _Lane:
    """One lane boundary: its curve on every road row and what kind of marking it is."""

    xf: np.ndarray            # x for every row of Scene.rows (extended beyond the label)
    y_top: float              # first drawn row
    y_bot: float              # last drawn row
    kind: str = "dashed"      # solid | dashed | dots | dashdots
    colour: str = "white"
    width_m: float = 0.12
    alpha: float = 1.0        # paint strength (worn markings are weaker)
    dash: tuple[float, float, float] = (3.0, 12.0, 0.0)  # length, period, phase (metres)


@dataclass
class _Scene:
    horizon: float
    xvp: float
    ppm_slope: float          # pixels per metre per row below the horizon
    focal: float
    rows: np.ndarray          # float rows from just below the horizon to the bottom
    lanes: list[_Lane]
    meta: dict = field(default_factory=dict)
    curv: float = 0.0         # road curvature (1/m) of the parametric model
    z_cap: float = 1e9        # beyond this distance (m) the parametric road runs straight
    lens: object = None       # lens.Lens applied after rendering (distortion / roll), or None

    def ppm(self, y):
        """Pixels per metre (laterally) on the ground at row y."""
        return self.ppm_slope * np.maximum(np.asarray(y, np.float32) - self.horizon, 0.5)

    def row_at(self, z):
        """Image row of the ground at distance z metres."""
        return self.horizon + self.focal / (self.ppm_slope * np.asarray(z, np.float32))

    def dist_at(self, y):
        """Ground distance (metres) seen at row y."""
        return self.focal / (self.ppm_slope * np.maximum(np.asarray(y, np.float32) - self.horizon, 0.5))

    def project(self, lateral, z):
        """Image (x, y) of the ground point ``lateral`` metres right of the camera, ``z`` ahead,
        on the parametric road (curving with ``curv``, straight beyond ``z_cap``)."""
        z = np.maximum(np.asarray(z, np.float32), 0.3)
        y = self.row_at(z)
        bend = 0.5 * self.curv * self.focal * np.minimum(z, self.z_cap)
        x = self.xvp + np.asarray(lateral, np.float32) * self.ppm(y) + bend
        return x, y

    def x_of(self, lane_xf: np.ndarray, y):
        return np.interp(y, self.rows, lane_xf)


def _chance(rng: np.random.Generator, p: float) -> bool:
    """True with probability ``p``; draws nothing when ``p`` is 0, so an ingredient switched off
    leaves every later draw, and so the frame, as it was without that ingredient."""
    return p > 0.0 and bool(rng.random() < p)


def _fx(v) -> np.ndarray:
    return np.round(np.asarray(v, np.float64) * _SCALE).astype(np.int32)


def _lowres_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Smooth noise (zero mean, ~unit amplitude): a small random grid upscaled bicubically."""
    grid = rng.standard_normal(cells).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _extend_curve(ys: np.ndarray, xs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x on every row: interpolated inside the labelled span, extrapolated linearly outside."""
    xf = np.interp(rows, ys, xs).astype(np.float32)
    if len(ys) >= 2:
        n = min(4, len(ys))
        top_slope = (xs[n - 1] - xs[0]) / max(ys[n - 1] - ys[0], 1e-3)
        bot_slope = (xs[-1] - xs[-n]) / max(ys[-1] - ys[-n], 1e-3)
        above, below = rows < ys[0], rows > ys[-1]
        xf[above] = xs[0] + top_slope * (rows[above] - ys[0])
        xf[below] = xs[-1] + bot_slope * (rows[below] - ys[-1])
    return xf


def _geometry_lanes(label: dict) -> dict | None:
    """Real label -> lanes as (ys ascending, xs), plus estimated horizon, vanishing x, spacing."""
    hs = np.asarray(label["h_samples"], np.float32)
    lanes = []
    for xs in label["lanes"]:
        xs = np.asarray(xs, np.float32)
        if xs.shape != hs.shape:
            continue
        ok = xs >= 0
        if ok.sum() >= 3:
            lanes.append((hs[ok], xs[ok]))
    if not lanes:
        return None
    top = min(float(ys[0]) for ys, _ in lanes)
    fits = []
    for ys, xs in lanes:
        lower = ys >= ys[0] + 0.3 * (ys[-1] - ys[0])
        if lower.sum() >= 2:
            b, a = np.polyfit(ys[lower], xs[lower], 1)  # x = a + b*y
            fits.append((a, b))
    cands = []
    for i in range(len(fits)):
        for j in range(i + 1, len(fits)):
            (a1, b1), (a2, b2) = fits[i], fits[j]
            if abs(b1 - b2) > 0.2:
                cands.append((a2 - a1) / (b1 - b2))
    horizon = float(np.median(cands)) if cands else top - 15.0
    horizon = float(np.clip(horizon, top - 80.0, top - 3.0))
    xvp = float(np.median([a + b * horizon for a, b in fits])) if fits else 640.0
    spacings = []
    order = sorted(lanes, key=lambda l: float(np.interp(710, l[0], l[1])))
    for (ya, xa), (yb, xb) in zip(order[:-1], order[1:], strict=True):
        common = np.intersect1d(ya, yb)
        common = common[common > horizon + 40]
        if len(common):
            d = np.interp(common, yb, xb) - np.interp(common, ya, xa)
            spacings.append(float(np.median(d / (common - horizon))))
    spacing = float(np.clip(np.median(spacings), 1.2, 4.5)) if spacings else 2.4
    order = sorted(lanes, key=lambda l: float(_bottom_x(l)))
    return {"lanes": order, "horizon": horizon, "xvp": xvp, "spacing": spacing}


def _bottom_x(lane) -> float:
    ys, xs = lane
    if len(ys) < 2:
        return float(xs[-1])
    n = min(4, len(ys))
    slope = (xs[-1] - xs[-n]) / max(ys[-1] - ys[-n], 1e-3)
    return float(xs[-1] + slope * (720 - ys[-1]))
