"""Network probability maps -> lane polylines in source-image pixels.

Per lane and sample row the decoder takes the column of the (box-smoothed) probability
maximum, keeps rows whose maximum clears ``prob_threshold``, and fits the lane hyperbola of
``lanefit`` to them (robust to rows whose maximum jumped to another blob, weighted by the
peak probability). The polyline is that fit sampled between the highest and the lowest
supporting row, so it bends one way only: no S-curve, loop or curl (see ``lanefit``).

Only the rows that will be reported are read from the maps (a band of ``smooth_kernel[0]``
rows around each), so the cost grows with the number of sample rows, not with the map
size. ``LaneDecoder.band_index`` names those rows so a backend can take the softmax of
just them (a softmax over the full (L+1) x 288 x 800 logits would cost more than the whole
1 ms postprocess budget on a small CPU).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from lanesad_ros.convergence import MAX_INNER_SLOPE
from lanesad_ros.existence import apply_calibration, as_calibration
from lanesad_ros.lanefit import FitTables, fit_lanes, horizon_grid, make_tables
from lanesad_ros.lanes import TUSIMPLE_H_SAMPLES, Lane, LaneSlot
from lanesad_ros.preprocess import Preprocessor
from lanesad_ros.slots import resolve_slots

FITS = ("hyperbola", "none")


@dataclass(frozen=True)
class PostprocessConfig:
    """How probability maps become lanes.

    ``rows``: which source rows get a point: "tusimple" (160..710 step 10, scaled and rounded
    to whole rows when the source is not 720 rows high), "culane" (every 20 px up from the
    bottom of a 590-row image, scaled likewise), "uniform" (every ``row_step`` source pixels up from the bottom), or an
    explicit sequence of source rows. Rows inside the cropped sky are never reported.
    ``smooth_kernel``: (rows, columns) of the box filter applied to each lane map before the
    per-row maximum; (1, 1) turns smoothing off.
    ``fit``: "hyperbola" (the robust lane hyperbola of ``lanesad_ros.lanefit``; a straight
    line for lanes with fewer than ``min_curve_points`` supporting rows) or "none" (the raw
    per-row maxima). Rows whose maximum lies more than ``outlier_px`` map pixels (normal
    distance) off the fit are outliers. Fitted curves are sampled from the highest supporting
    row down to the lowest one, or, with ``extend_to_bottom``, on down to the bottom sample row
    until the curve leaves the image: a lane boundary runs on towards the camera, while the
    network's response fades near the image bottom, in shadows and behind vehicles (on the
    validation clips the fade cost 0.04 TuSimple accuracy; TuSimple labels lanes down to the
    image edge).
    ``geometry``: enforce the slot rules of ``lanesad_ros.slots`` (no crossings, the ego pair
    straddles the camera column, outer lanes only at a plausible spacing); off, slots are the
    network's channels as they come.
    ``max_inner_slope``: the flattest near-field ``|dx/dy|`` the lane nearest the camera on either
    side may have (``lanesad_ros.convergence`` rule 3, applied with ``geometry``); 0 turns the rule
    off (cameras lower than about 0.6 m above the road, where real boundaries look flatter).
    ``ground_check``: with a camera model (``Detector.camera``), drop lanes implausible on the
    road plane (:mod:`lanesad_ros.ground_check`); without one it does nothing.
    ``exist_calibration``: (scale, bias) of the map ``logit(p') = scale * logit(p) + bias``
    applied to the network's existence probabilities before ``exist_threshold`` (Platt or
    temperature scaling fitted on validation frames, ``lanesad_ros.existence``); a mapping
    ``{"scale", "bias", "method"}`` as stored in weights metadata is accepted. (1, 0) = as is.
    """

    exist_threshold: float = 0.5
    prob_threshold: float = 0.3
    smooth_kernel: tuple[int, int] = (1, 5)
    min_points: int = 4
    rows: str | Sequence[float] = "tusimple"
    row_step: float = 10.0
    fit: str = "hyperbola"
    min_curve_points: int = 8
    outlier_px: float = 10.0
    geometry: bool = True
    max_inner_slope: float = MAX_INNER_SLOPE
    ground_check: bool = True
    extend_to_bottom: bool = True
    subpixel: bool = True
    exist_calibration: tuple[float, float] = (1.0, 0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exist_calibration", as_calibration(self.exist_calibration))
        if self.fit not in FITS:
            raise ValueError(f"PostprocessConfig.fit must be one of {FITS}, got {self.fit!r}")
        if isinstance(self.rows, str) and self.rows not in ("tusimple", "culane", "uniform"):
            raise ValueError("PostprocessConfig.rows must be 'tusimple', 'culane', 'uniform' or a list of rows, "
                             f"got {self.rows!r}")
        if not isinstance(self.rows, str):
            object.__setattr__(self, "rows", tuple(float(r) for r in self.rows))
        kernel = self.smooth_kernel
        if isinstance(kernel, int):
            kernel = (kernel, kernel)
        kernel = tuple(int(k) for k in kernel)
        if len(kernel) != 2 or min(kernel) < 1:
            raise ValueError(f"PostprocessConfig.smooth_kernel must be one or two positive ints, "
                             f"got {self.smooth_kernel!r}")
        object.__setattr__(self, "smooth_kernel", kernel)
        for name in ("exist_threshold", "prob_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"PostprocessConfig.{name} must be in [0, 1], got {value}")
        if not self.max_inner_slope >= 0.0:
            raise ValueError(f"PostprocessConfig.max_inner_slope must be >= 0 (0 = off), got {self.max_inner_slope}")
        if self.min_points < 2:
            raise ValueError(f"PostprocessConfig.min_points must be >= 2, got {self.min_points}")
        if self.row_step <= 0:
            raise ValueError(f"PostprocessConfig.row_step must be > 0, got {self.row_step}")
        if self.min_curve_points < 3:
            raise ValueError(f"PostprocessConfig.min_curve_points must be >= 3, got {self.min_curve_points}")
        if self.outlier_px <= 0:
            raise ValueError(f"PostprocessConfig.outlier_px must be > 0, got {self.outlier_px}")

    def with_overrides(self, **overrides) -> PostprocessConfig:
        """A copy with some fields replaced; unknown names raise a clear error."""
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown postprocess option(s): {sorted(unknown)}; "
                             f"known: {sorted(self.__dataclass_fields__)}")
        return replace(self, **overrides)


def sample_rows(config: PostprocessConfig, source_height: int) -> np.ndarray:
    """Source rows (float) at which lanes are reported, before cropping is taken into account."""
    h = float(source_height)
    if config.rows == "tusimple":
        rows = np.asarray(TUSIMPLE_H_SAMPLES, dtype=np.float64) * (h / 720.0)
    elif config.rows == "culane":
        # CULane rows count up from the image bottom (y = 590, 570, ...); y = 590 itself is the edge.
        rows = np.minimum(h - 1, (590.0 - 20.0 * np.arange(0, 30)) * (h / 590.0))
    elif config.rows == "uniform":
        rows = (h - 1) - config.row_step * np.arange(0, int(h // config.row_step) + 1)
    else:
        rows = np.asarray(config.rows, dtype=np.float64)
    if isinstance(config.rows, str):
        rows = np.rint(rows)  # scaled rows land on whole pixel rows
    rows = rows[(rows >= 0) & (rows <= h - 1)]
    return np.unique(rows)


class LaneDecoder:
    """Precomputed row geometry for one (preprocessor, config); reused across frames.

    The row tables depend on the source image size, so they are cached per size (a camera
    keeps one size, so this is computed once). ``camera_column``: the source column under the
    camera (the principal point cx of its CameraInfo) for the slot rules; None = image centre.
    """

    def __init__(self, preprocessor: Preprocessor, config: PostprocessConfig | None = None,
                 num_lanes: int | None = None, camera_column: float | None = None):
        self.preprocessor = preprocessor
        self.config = config or PostprocessConfig()
        self.num_lanes = num_lanes
        self.camera_column = camera_column
        self._rows_cache: dict[tuple[int, int], _RowTables] = {}

    def row_tables(self, source_size: tuple[int, int]) -> _RowTables:
        """Sample rows and everything derived from them, for one source image size."""
        key = (int(source_size[0]), int(source_size[1]))
        cached = self._rows_cache.get(key)
        if cached is not None:
            return cached
        h, _ = self.preprocessor.input_size
        ys = sample_rows(self.config, key[1])
        ys = ys[ys >= self.preprocessor.crop_rows(key[1])]
        _, v = self.preprocessor.to_input(np.zeros_like(ys), ys, key)
        v = v.astype(np.float64)
        keep = (v > -0.5) & (v < h - 0.5)
        ys, v = ys[keep], v[keep]
        centre = np.clip(np.rint(v), 0, h - 1).astype(np.intp)
        ky = self.config.smooth_kernel[0]
        offsets = np.arange(ky) - ky // 2
        band = np.clip(offsets[:, None] + centre[None, :], 0, h - 1)
        v_seen = centre.astype(np.float64)
        _, y_seen = self.preprocessor.to_source(np.zeros_like(v_seen), v_seen, key)
        fit = make_tables(y_seen, ys, horizon_grid(key[1], self.preprocessor.crop_rows(key[1])), key[1])
        tables = _RowTables(ys=ys, v=v, band=band, v_seen=v_seen, fit=fit)
        self._rows_cache[key] = tables
        return tables

    def band_index(self, source_size: tuple[int, int]) -> np.ndarray:
        """Flat map-row indices to gather (ky * R): lets a backend copy only these rows off the device."""
        return self.row_tables(source_size).band.reshape(-1)

    def existence(self, exist_prob: np.ndarray) -> np.ndarray:
        """The network's (L,) existence probabilities -> the calibrated ones thresholds and confidences use."""
        return apply_calibration(np.asarray(exist_prob, dtype=np.float32).reshape(-1), self.config.exist_calibration)

    def decode(self, maps: np.ndarray, exist_prob: np.ndarray, source_size: tuple[int, int],
               *, gathered: bool = False) -> list[Lane]:
        """Softmax probability maps + existence -> lanes, ordered by lane index, with slots
        that obey ``lanesad_ros.slots`` (unless ``config.geometry`` is off).

        ``maps``: (L+1, h, w) softmax probabilities with channel 0 the background.
        ``gathered``: maps already reduced to the rows of ``band_index`` (L+1, ky * R, w),
        e.g. on the GPU before the copy to host memory.
        """
        cfg = self.config
        exist_prob = self.existence(exist_prob)
        maps = np.asarray(maps)
        if maps.ndim != 3 or maps.shape[0] < 2:
            raise ValueError(f"expected maps of shape (lanes + 1, h, w), got {maps.shape}")
        num_lanes = maps.shape[0] - 1
        if exist_prob.shape[0] != num_lanes:
            raise ValueError(f"existence has {exist_prob.shape[0]} lanes but the maps have {num_lanes}")
        src_w, src_h = int(source_size[0]), int(source_size[1])
        if src_w <= 0 or src_h <= 0:
            raise ValueError(f"source_size must be positive (width, height), got {source_size}")
        tables = self.row_tables((src_w, src_h))
        ys, band = tables.ys, tables.band
        present = np.flatnonzero(exist_prob > cfg.exist_threshold)
        if present.size == 0 or ys.size == 0:
            return []
        ky, kx = cfg.smooth_kernel
        n_rows, w = len(ys), maps.shape[2]
        if gathered:
            rows = maps[present + 1].reshape(len(present), ky, n_rows, w).transpose(1, 0, 2, 3)
        else:
            rows = maps[(present + 1)[None, :, None], band[:, None, :], :]  # (ky, n, R, w)
        smooth = np.add.reduce(rows, axis=0, dtype=np.float32) if ky > 1 else rows[0].astype(np.float32, copy=False)
        smooth = np.ascontiguousarray(smooth).reshape(-1, w)
        box = np.full(kx, 1.0 / (kx * ky), dtype=np.float32)
        smooth = cv2.sepFilter2D(smooth, -1, box, _ONE, borderType=cv2.BORDER_REPLICATE)
        smooth = smooth.reshape(len(present), n_rows, w)
        col = smooth.argmax(axis=2)
        peak = np.take_along_axis(smooth, col[..., None], axis=2)[..., 0]
        u = col.astype(np.float64)
        if cfg.subpixel:
            left = np.take_along_axis(smooth, np.maximum(col - 1, 0)[..., None], axis=2)[..., 0]
            right = np.take_along_axis(smooth, np.minimum(col + 1, w - 1)[..., None], axis=2)[..., 0]
            denom = (left - 2.0 * peak + right).astype(np.float64)
            curved = denom < -1e-6
            u += np.where(curved, 0.5 * (left - right) / np.where(curved, denom, -1.0), 0.0)
        seen = peak > cfg.prob_threshold
        sx = src_w / self.preprocessor.input_size[1]
        x = (u + 0.5) * sx - 0.5  # map column -> source x (Preprocessor.to_source)
        if cfg.fit == "hyperbola":
            fit = fit_lanes(x, np.where(seen, peak, 0.0), tables.fit, inlier_px=cfg.outlier_px * sx,
                            min_curve_points=cfg.min_curve_points)
            x, support = fit.x_out, fit.inliers
            # Report the fit from the highest supporting row down to the lowest one, or on down
            # to the bottom row while the curve stays inside the image (extend_to_bottom).
            first = support.argmax(axis=1)
            last = n_rows - 1 - support[:, ::-1].argmax(axis=1)
            index = np.arange(n_rows)
            inside = (x >= -0.5) & (x <= src_w - 0.5)
            below = index > last[:, None]
            lowest = last[:, None] if not cfg.extend_to_bottom else np.where(
                np.cumprod(~below | inside, axis=1, dtype=bool), n_rows - 1, -1)
            seen = (index >= first[:, None]) & (index <= lowest) & support.any(axis=1)[:, None]
            seen &= (support.sum(axis=1) >= cfg.min_points)[:, None]
        seen &= (x >= -0.5) & (x <= src_w - 0.5)
        seen &= (seen.sum(axis=1) >= cfg.min_points)[:, None]
        x = np.where(seen, x, np.nan)
        num_slots = self.num_lanes or num_lanes
        if cfg.geometry:
            x, slots = resolve_slots(x, ys, exist_prob[present], src_w, self.camera_column, num_slots,
                                     image_height=src_h, max_inner_slope=cfg.max_inner_slope)
        else:
            slots = np.array([int(LaneSlot.from_index(int(i), num_slots)) for i in present])
        lanes = []
        for k, lane_index in enumerate(present):
            ok = np.isfinite(x[k])
            if np.count_nonzero(ok) < cfg.min_points:
                continue
            points = np.stack([x[k, ok], ys[ok]], axis=1)[::-1]  # rows ascend, so reverse: bottom first
            lanes.append(Lane(slot=LaneSlot(int(slots[k])), confidence=float(exist_prob[lane_index]),
                              image_points=points, index=int(lane_index)))
        return lanes


_ONE = np.ones(1, dtype=np.float32)


@dataclass(frozen=True)
class _RowTables:
    """Per source size: source rows ``ys`` (R,), their map rows ``v`` (float) and ``band``
    (ky, R) indices, the map row read for each (``v_seen``), and the lane-fit basis ``fit``
    (points at the source rows of ``v_seen``, sampled at ``ys``)."""

    ys: np.ndarray
    v: np.ndarray
    band: np.ndarray
    v_seen: np.ndarray
    fit: FitTables


def lanes_from_maps(seg_prob: np.ndarray, exist_prob: np.ndarray, preprocessor: Preprocessor,
                    source_size: tuple[int, int], config: PostprocessConfig | None = None) -> list[Lane]:
    """Softmax probability maps (L+1, h, w) + existence (L,) -> lanes in source pixels.

    Convenience wrapper for one-off calls; the Detector keeps a ``LaneDecoder`` so the row
    tables are computed once per image size.
    """
    seg_prob = np.asarray(seg_prob)
    return LaneDecoder(preprocessor, config, num_lanes=seg_prob.shape[0] - 1).decode(seg_prob, exist_prob, source_size)
