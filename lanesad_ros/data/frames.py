"""A labelled road frame as every loader returns it, and ego-relative lane slots.

All loaders (TuSimple, CULane, BDD100K, the synthetic generator) produce ``LabelledFrame``
so training, evaluation and tests see one shape of data whatever the source.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lanesad_ros.lanes import TUSIMPLE_H_SAMPLES, LaneSlot, lane_x_at_rows  # noqa: F401 (TUSIMPLE_H_SAMPLES re-exported for the loaders)


class DataError(ValueError):
    """Bad or missing data; the message names the file (and line/field where known)."""


@dataclass
class LabelledFrame:
    """One image with its lane boundaries.

    ``lanes``: float32 arrays (N, 2) of (x, y) source pixels, one per lane, ordered left to
    right. ``slots``: ego-relative ``LaneSlot`` value per lane (255 = no slot, e.g. a fifth
    lane). ``h_samples``: the rows a TuSimple-style label was sampled at, else None.
    ``image`` is BGR uint8 when already in memory; otherwise ``load_image()`` reads
    ``image_path``.
    """

    image_path: Path | None
    image: np.ndarray | None
    lanes: list[np.ndarray]
    slots: list[int]
    h_samples: np.ndarray | None = None
    width: int = 1280
    height: int = 720
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lanes = [np.asarray(lane, dtype=np.float32).reshape(-1, 2) for lane in self.lanes]
        self.slots = [int(s) for s in self.slots]
        if len(self.slots) != len(self.lanes):
            raise DataError(f"{self.image_path}: {len(self.lanes)} lanes but {len(self.slots)} slots")
        if self.image_path is not None:
            self.image_path = Path(self.image_path)
        if self.h_samples is not None:
            self.h_samples = np.asarray(self.h_samples, dtype=np.int32)

    def load_image(self) -> np.ndarray:
        """The BGR uint8 image (read from ``image_path`` unless already in memory)."""
        if self.image is not None:
            return self.image
        return read_image(self.image_path)

    def lane_xs(self, rows: np.ndarray | None = None) -> list[np.ndarray]:
        """Each lane's x at ``rows`` (default ``h_samples``), -2 where the lane has no point."""
        rows = self.h_samples if rows is None else np.asarray(rows)
        if rows is None:
            raise DataError(f"{self.image_path}: frame has no h_samples; pass rows explicitly")
        return [lane_x_at_rows(lane, rows) for lane in self.lanes]


def read_image(path: Path | str | None) -> np.ndarray:
    """cv2.imread that raises ``DataError`` naming the file instead of returning None."""
    if path is None:
        raise DataError("frame has neither an image nor an image_path")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise DataError(f"cannot decode image file (corrupt or not an image): {path}")
    return image


def _x_at_row(lane: np.ndarray, row: float) -> float:
    """x of a lane at ``row``, extrapolating linearly from its lowest points when it ends above."""
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


def assign_slots(lanes: list[np.ndarray], image_width: int, num_slots: int = 4) -> list[int]:
    """Ego-relative slot for each lane (in the given order).

    Lanes are compared by their x at the lowest labelled row of the frame (extrapolated for
    lanes that end higher). Of the lanes left of the image centre the nearest gets LEFT and
    the next LEFT_LEFT; right of centre RIGHT, then RIGHT_RIGHT. Lanes beyond that (or empty
    ones) get ``LaneSlot.UNKNOWN``. For ``num_slots`` other than 4 the same rule fills
    ``num_slots // 2`` slots on each side, numbered left to right from 0.
    """
    slots = [int(LaneSlot.UNKNOWN)] * len(lanes)
    arrays = [np.asarray(lane, dtype=np.float32).reshape(-1, 2) for lane in lanes]
    usable = [i for i, lane in enumerate(arrays) if len(lane) > 0]
    if not usable:
        return slots
    bottom = max(float(arrays[i][:, 1].max()) for i in usable)
    xs = {i: _x_at_row(arrays[i], bottom) for i in usable}
    centre = image_width / 2.0
    per_side = num_slots // 2
    left = sorted((i for i in usable if xs[i] < centre), key=lambda i: -xs[i])[:per_side]
    right = sorted((i for i in usable if xs[i] >= centre), key=lambda i: xs[i])[:num_slots - per_side]
    for rank, i in enumerate(left):
        slots[i] = per_side - 1 - rank
    for rank, i in enumerate(right):
        slots[i] = per_side + rank
    return slots
