"""Temporal smoothing of lanes across frames, one track per lane slot.

Each track holds the coefficients of a quadratic x(y) in source pixels and filters them
with a small Kalman filter (constant-curve model, diagonal covariance), which settles to
exponential smoothing with a gain set by ``process_noise_px`` / ``measurement_noise_px``.
A detection far from its track (a lane change, a slot swap) restarts the track instead of
being blended in, so real changes are followed at once. A slot missing for up to
``hold_frames`` frames keeps its last curve with a decaying confidence, then is dropped.
Tracks live in source-image pixels: a frame of another size (a camera that switches
resolution) restarts every track, so no lane of the old geometry reaches the new frames.

Time: given each frame's header stamp, tracks age by that time, never by the wall clock
(a bag replayed faster or slower ages them alike). A track last seen more than ``max_gap_s``
before the frame is dropped before the frame is matched (a paused stream, a slow node: its
lane is not blended into the first new detection nor held any longer), and a stamp earlier
than the previous frame's (a bag played in a loop, a simulator reset) restarts every track.
Without stamps only the frame counts above apply.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lanesad_ros.lanes import Lane

_Y_SCALE = 1000.0  # rows are divided by this before fitting, so coefficients stay comparable


@dataclass
class _Track:
    coef: np.ndarray  # (3,) x = c0 + c1 t + c2 t^2, t = y / _Y_SCALE
    var: np.ndarray  # (3,) variance of each coefficient
    rows: np.ndarray
    confidence: float
    lane: Lane
    misses: int = 0
    seen_s: float | None = None  # header stamp of the last frame that detected it


def _fit(points: np.ndarray) -> np.ndarray:
    """Quadratic (linear for fewer than 4 points) x(t) coefficients, ascending powers."""
    t = points[:, 1].astype(np.float64) / _Y_SCALE
    degree = 2 if len(points) >= 4 else 1
    coef = np.polynomial.polynomial.polyfit(t, points[:, 0].astype(np.float64), degree)
    return np.pad(coef, (0, 3 - len(coef)))


def _evaluate(coef: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.polynomial.polynomial.polyval(rows.astype(np.float64) / _Y_SCALE, coef)


@dataclass
class LaneTracker:
    """``update(lanes) -> lanes``: smoothed lanes, slot-consistent, held through short dropouts.

    ``process_noise_px``: how far (px) a lane is expected to drift per frame; smaller is
    steadier but slower to follow. ``measurement_noise_px``: per-frame detection jitter (px).
    ``gate_px``: a detection whose mean distance to the track exceeds this restarts the track.
    ``hold_frames``: frames a missing lane is still reported; ``hold_decay``: confidence factor per missed frame.
    ``max_gap_s``: seconds of header time after which a track that was not detected is dropped
    (see the module docstring); ``stamp_s``: the stamp of the last frame, None before the first stamped one.
    """

    process_noise_px: float = 2.0
    measurement_noise_px: float = 6.0
    gate_px: float = 40.0
    hold_frames: int = 3
    hold_decay: float = 0.7
    max_gap_s: float = 1.0
    tracks: dict[int, _Track] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None  # (width, height) the tracks are in
    stamp_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("process_noise_px", "measurement_noise_px", "gate_px", "max_gap_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LaneTracker.{name} must be > 0, got {getattr(self, name)}")
        if self.hold_frames < 0 or not 0.0 < self.hold_decay <= 1.0:
            raise ValueError(f"LaneTracker needs hold_frames >= 0 and 0 < hold_decay <= 1, got "
                             f"{self.hold_frames}, {self.hold_decay}")

    def reset(self) -> None:
        self.tracks.clear()
        self.image_size = None
        self.stamp_s = None

    def _noise(self, scale_px: float) -> np.ndarray:
        # The same pixel-scale noise on each coefficient's contribution over a typical t range (~0.5).
        return (scale_px ** 2) * np.array([1.0, 4.0, 16.0])

    def update(self, lanes: list[Lane], image_size: tuple[int, int] | None = None,
               stamp_s: float | None = None) -> list[Lane]:
        """Feed one frame's detections; returns the smoothed lanes ordered by lane index.

        ``image_size`` (width, height) of the frame: when it differs from the previous
        frame's, all tracks restart (their pixels belong to the old geometry).
        ``stamp_s``: the frame's header stamp in seconds (any clock, as long as one stream
        keeps to it); earlier than the previous frame's restarts all tracks, and tracks not
        detected for more than ``max_gap_s`` are dropped first.
        """
        if image_size is not None:
            image_size = (int(image_size[0]), int(image_size[1]))
            if self.image_size is not None and image_size != self.image_size:
                self.tracks.clear()
            self.image_size = image_size
        if stamp_s is not None:
            stamp_s = float(stamp_s)
            if self.stamp_s is not None and stamp_s < self.stamp_s:
                self.tracks.clear()  # time went back: a looped bag, a simulator reset
            stale = [key for key, track in self.tracks.items()
                     if track.seen_s is not None and stamp_s - track.seen_s > self.max_gap_s]
            for key in stale:
                del self.tracks[key]
            self.stamp_s = stamp_s
        seen = set()
        for lane in lanes:
            if len(lane.image_points) < 2:
                continue
            key = lane.index
            seen.add(key)
            z = _fit(lane.image_points)
            track = self.tracks.get(key)
            rows = lane.image_points[:, 1]
            if track is not None:
                distance = float(np.mean(np.abs(_evaluate(track.coef, rows) - lane.image_points[:, 0])))
                if distance > self.gate_px:
                    track = None
            if track is None:
                self.tracks[key] = _Track(coef=z, var=self._noise(self.measurement_noise_px), rows=rows.copy(),
                                          confidence=lane.confidence, lane=lane, seen_s=stamp_s)
                continue
            var = track.var + self._noise(self.process_noise_px)
            gain = var / (var + self._noise(self.measurement_noise_px))
            track.coef = track.coef + gain * (z - track.coef)
            track.var = (1.0 - gain) * var
            track.rows = rows.copy()
            track.confidence = 0.5 * (track.confidence + lane.confidence)
            track.lane = lane
            track.misses = 0
            track.seen_s = stamp_s
        for key in list(self.tracks):
            if key not in seen:
                self.tracks[key].misses += 1
                if self.tracks[key].misses > self.hold_frames:
                    del self.tracks[key]
        out = []
        for key in sorted(self.tracks):
            track = self.tracks[key]
            points = np.stack([_evaluate(track.coef, track.rows), track.rows], axis=1)
            confidence = track.confidence * self.hold_decay ** track.misses
            out.append(Lane(slot=track.lane.slot, confidence=float(confidence), image_points=points,
                            index=track.lane.index))
        return out
