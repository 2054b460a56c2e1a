"""Marking type (solid, dashed, double, Botts' dots) and colour (white, yellow) of a fitted boundary.

Measured in the image along the boundary's ground cubic: a strip of the road around it is
resampled in metres (along x every ``step_m``, across every ``lateral_step_m``; each ground
point projected with the camera model and read with bilinear interpolation), so dash lengths,
gaps and the spacing of two lines are compared in metres whatever the distance. Only the
near part is read, where one metre along the road spans at least ``min_rows_per_m`` image
rows (farther away a dash and its gap blur into a few rows).

Paint is found by its luminance ratio to the road beside it (linear RGB, per strip row), a
ratio that shadows and exposure scale away. The type comes from the rhythm of painted rows
along the strip: paint nearly everywhere is solid, paint runs of a metre or more between
gaps of metres is dashed (US dashes 3 m with 9 m gaps, European 3-6 m with 6-12 m gaps),
short blobs at a spacing is Botts' dots; two peaks across the strip on most painted rows is a
double line. The colour is the paint's linear RGB divided channel by channel by the road's
beside it (von Kries adaptation with the road as the grey reference: a colour cast of the
camera or the light multiplies both and cancels), then yellowness = 1 - blue / mean(red,
green): about 0 for white paint, 0.5-1 for yellow paint, even worn.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import cv2
import numpy as np

from lanesad_ros.camera import GroundProjector
from lanesad_ros.road.boundary import BoundaryFit

# uint8 -> linear light (sRGB decoding as a 2.2 power, close enough for ratios), plus a floor
# so a black pixel divides safely.
_LINEAR = ((np.arange(256, dtype=np.float32) / 255.0) ** 2.2 + 1e-4).astype(np.float32)


class MarkingType(enum.IntEnum):
    """Matches LaneBoundary.MARKING_* ."""

    UNKNOWN = 0
    SOLID = 1
    DASHED = 2
    DOUBLE = 3
    BOTTS_DOTS = 4


class MarkingColor(enum.IntEnum):
    """Matches LaneBoundary.COLOR_* ."""

    UNKNOWN = 0
    WHITE = 1
    YELLOW = 2


@dataclass(frozen=True)
class MarkingConfig:
    """How the strip along a boundary is read and judged (metres, luminance ratios).

    ``min_contrast``: least paint / road luminance ratio minus one that counts as paint (raised
    on noisy roads to 4 robust sigmas of the road's own ratio). ``solid_fraction``: painted share
    of the strip above which a line with no gap longer than ``max_solid_gap_m`` is solid.
    ``min_dash_gap_m`` / ``min_dash_m``: a dashed line has a gap and a paint run at least this long.
    ``max_dot_m``: paint runs no longer than this are dots. ``double_fraction``: share of painted
    rows with two lines across. ``yellow_threshold``: yellowness above which paint is yellow.
    """

    step_m: float = 0.1
    lateral_step_m: float = 0.02
    half_width_m: float = 0.6
    search_half_width_m: float = 0.3
    road_inner_m: float = 0.35
    line_clearance_m: float = 0.2
    max_range_m: float = 40.0
    min_rows_per_m: float = 3.0
    min_length_m: float = 5.0
    min_contrast: float = 0.25
    solid_fraction: float = 0.85
    max_solid_gap_m: float = 1.0
    min_dash_gap_m: float = 1.5
    min_dash_m: float = 0.8
    max_dot_m: float = 0.6
    double_fraction: float = 0.5
    min_paint_rows: int = 5
    yellow_threshold: float = 0.3


@dataclass(frozen=True)
class Marking:
    """Type and colour of one boundary, each with a confidence 0..1, and what they were judged on:
    ``painted_fraction`` of the strip, ``longest_gap_m``, ``length_m`` read, ``yellowness``."""

    type: MarkingType
    type_confidence: float
    color: MarkingColor
    color_confidence: float
    painted_fraction: float = 0.0
    longest_gap_m: float = 0.0
    length_m: float = 0.0
    yellowness: float = float("nan")


UNMEASURED = Marking(MarkingType.UNKNOWN, 0.0, MarkingColor.UNKNOWN, 0.0)


def _runs(mask: np.ndarray) -> np.ndarray:
    """Lengths (in samples) of the True runs of a 1-D bool array, in order."""
    padded = np.concatenate([[0], np.asarray(mask, np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return edges[1::2] - edges[0::2]


def _strip(bgr: np.ndarray, fit: BoundaryFit, projector: GroundProjector, config: MarkingConfig):
    """(rows along x, cols across, BGR) linear-RGB strip around the boundary, its distances and offsets.

    Each strip row is a segment across the road at one distance: its two ends are projected and
    the pixels between them interpolated (a ground segment at one distance is a straight image
    segment with evenly spaced points for a pinhole; lens distortion bends it negligibly over a
    metre), then read with bilinear interpolation.
    """
    x_far = min(fit.x_max, config.max_range_m)
    xs = np.arange(fit.x_min, x_far, config.step_m)
    if len(xs) < 2:
        return None
    centre = projector.ground_to_image(np.stack([xs, fit.y(xs), np.zeros_like(xs)], axis=1))
    rows_per_m = np.abs(np.gradient(centre[:, 1], xs))
    xs = xs[np.isfinite(rows_per_m) & (rows_per_m >= config.min_rows_per_m)]
    if len(xs) * config.step_m < config.min_length_m:
        return None
    offsets = np.arange(-config.half_width_m, config.half_width_m + 1e-9, config.lateral_step_m)
    ends = [projector.ground_to_image(np.stack([xs, fit.y(xs) + side, np.zeros_like(xs)], axis=1))
            for side in (offsets[0], offsets[-1])]
    t = ((offsets - offsets[0]) / (offsets[-1] - offsets[0]))[None, :, None]
    pix = ends[0][:, None, :] * (1.0 - t) + ends[1][:, None, :] * t  # (rows, cols, 2)
    height, width = bgr.shape[:2]
    inside = np.all(np.isfinite(pix), axis=2) & (pix[..., 0] >= 0) & (pix[..., 0] <= width - 1) \
        & (pix[..., 1] >= 0) & (pix[..., 1] <= height - 1)
    valid_rows = inside.all(axis=1)
    maps = np.where(inside[..., None], pix, -1.0).astype(np.float32)
    strip = cv2.remap(bgr, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    linear = _LINEAR[strip[valid_rows]]
    return linear, xs[valid_rows], offsets


def _yellowness(relative: np.ndarray) -> np.ndarray:
    """1 - blue / mean(red, green) of colours relative to the road (BGR last axis): 0 grey/white, ~1 yellow."""
    return 1.0 - relative[..., 0] / np.maximum(0.5 * (relative[..., 1] + relative[..., 2]), 1e-6)


def measure_marking(bgr: np.ndarray, fit: BoundaryFit, projector: GroundProjector,
                    config: MarkingConfig = MarkingConfig()) -> Marking:
    """Marking type and colour of the boundary ``fit`` in the BGR uint8 source image ``bgr``
    (the image the fit came from, seen through ``projector``). UNMEASURED when less than
    ``config.min_length_m`` of the boundary lies near enough inside the image.

    Paint is told from road by its contrast to the road beside it on the same strip row: the
    luminance ratio minus one, or (yellow paint on light concrete has little of that) twice
    the yellowness relative to the road, whichever is larger.
    """
    made = _strip(bgr, fit, projector, config)
    if made is None or len(made[1]) * config.step_m < config.min_length_m:
        return UNMEASURED
    linear, xs, offsets = made
    # Sensor noise and JPEG blocks: averaged over 3 x 3 strip samples (0.3 m along, 6 cm across,
    # less than a line is wide), or the largest of the samples searched would be noise.
    linear = cv2.blur(linear, (3, 3))
    road_cols = np.abs(offsets) >= config.road_inner_m
    road = np.median(linear[:, road_cols], axis=1)  # (rows, 3)
    relative = linear / road[:, None, :]
    weights = np.array([0.0722, 0.7152, 0.2126], np.float32)
    luminance = (linear @ weights) / (road @ weights)[:, None] - 1.0
    contrast = np.maximum(luminance, 2.0 * _yellowness(relative))
    road_contrast = contrast[:, road_cols]
    noise = 1.4826 * np.median(np.abs(road_contrast - np.median(road_contrast)))
    threshold = max(config.min_contrast, 4.0 * noise)
    search = np.flatnonzero(np.abs(offsets) <= config.search_half_width_m)
    peak_col = search[np.argmax(contrast[:, search], axis=1)]
    # A line is narrow: its contrast over the mean of the road ``line_clearance_m`` either side
    # (a top hat), so a broad bright band (worn concrete, a seam across the road) is no paint.
    rows, side = np.arange(len(xs)), int(round(config.line_clearance_m / config.lateral_step_m))
    beside = 0.5 * (contrast[rows, np.maximum(peak_col - side, 0)]
                    + contrast[rows, np.minimum(peak_col + side, len(offsets) - 1)])
    painted = contrast[rows, peak_col] - np.maximum(beside, 0.0) > threshold
    fraction = float(painted.mean())
    runs_m, gaps_m = _runs(painted) * config.step_m, _runs(~painted) * config.step_m
    longest_gap = float(gaps_m.max()) if len(gaps_m) else 0.0
    kind, confidence = _judge_type(painted, contrast, threshold, offsets, fraction, runs_m, longest_gap, config)
    color, color_confidence, yellowness = _judge_color(relative, painted, peak_col, config)
    return Marking(kind, confidence, color, color_confidence, painted_fraction=fraction,
                   longest_gap_m=longest_gap, length_m=len(xs) * config.step_m, yellowness=yellowness)


def _double_rows(contrast: np.ndarray, threshold: float, offsets: np.ndarray, config: MarkingConfig) -> np.ndarray:
    """(rows,) True where a contrast row has two paint runs (each two samples or more) near the centre."""
    near = np.abs(offsets) <= config.search_half_width_m + 0.1
    paint = cv2.blur(contrast[:, near].astype(np.float32), (3, 1)) > threshold
    starts = paint & ~np.pad(paint, ((0, 0), (1, 0)))[:, :-1]  # first sample of each run
    long_starts = starts & np.pad(paint, ((0, 0), (0, 1)))[:, 1:]  # ... whose next sample is paint too
    return long_starts.sum(axis=1) >= 2


def _judge_type(painted, contrast, threshold, offsets, fraction, runs_m, longest_gap, config):
    if fraction < 0.05 or painted.sum() < config.min_paint_rows:
        return MarkingType.UNKNOWN, float(np.clip(1.0 - fraction / 0.05, 0.0, 1.0))
    doubles = float(_double_rows(contrast[painted], threshold, offsets, config).mean())
    if doubles >= config.double_fraction:
        return MarkingType.DOUBLE, float(np.clip(0.5 + 0.5 * (doubles - config.double_fraction)
                                                 / (1.0 - config.double_fraction), 0.0, 1.0))
    if fraction >= config.solid_fraction and longest_gap <= config.max_solid_gap_m:
        return MarkingType.SOLID, float(np.clip(0.5 + 0.5 * (fraction - config.solid_fraction)
                                                / (1.0 - config.solid_fraction), 0.0, 1.0))
    longest_run = float(runs_m.max())
    if longest_gap >= config.min_dash_gap_m and longest_run >= config.min_dash_m:
        margin = min(longest_gap / config.min_dash_gap_m, longest_run / config.min_dash_m, 2.0)
        return MarkingType.DASHED, float(0.5 * margin)
    if len(runs_m) >= 4 and np.median(runs_m) <= config.max_dot_m and longest_run <= 2 * config.max_dot_m:
        return MarkingType.BOTTS_DOTS, float(np.clip(0.25 + 0.25 * len(runs_m) / 4.0, 0.0, 1.0))
    if fraction >= 0.6:  # mostly painted with a short break: a solid line worn or occluded
        return MarkingType.SOLID, 0.3
    return MarkingType.UNKNOWN, 0.3


def _judge_color(relative, painted, peak_col, config):
    rows = np.flatnonzero(painted)
    if len(rows) < config.min_paint_rows:
        return MarkingColor.UNKNOWN, 0.0, float("nan")
    yellowness = float(_yellowness(relative[rows, peak_col[rows]].mean(axis=0)))
    margin = (yellowness - config.yellow_threshold) / config.yellow_threshold
    color = MarkingColor.YELLOW if margin > 0 else MarkingColor.WHITE
    return color, float(np.clip(abs(margin), 0.0, 1.0)), yellowness
