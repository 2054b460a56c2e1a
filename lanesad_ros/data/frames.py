"""A labelled road frame as every loader returns it, and ego-relative lane slots.

All loaders (TuSimple, CULane, BDD100K, the synthetic generator) produce ``LabelledFrame``
so training, evaluation and tests see one shape of data whatever the source. The labelling
rule for slots, ``assign_slots``, lives in ``lanesad_ros.slots`` beside the rules the decoder
enforces on the network's lanes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lanesad_ros.lanes import TUSIMPLE_H_SAMPLES, lane_x_at_rows  # noqa: F401 (TUSIMPLE_H_SAMPLES re-exported for the loaders)
from lanesad_ros.slots import assign_slots  # noqa: F401 (re-exported for the loaders)


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
