"""The core's currency: lanes as the detector, metrics, overlays and ROS glue see them."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

# Rows at which TuSimple labels (1280x720) give lane x positions; other sizes scale them.
TUSIMPLE_H_SAMPLES = np.arange(160, 720, 10, dtype=np.int32)


class LaneSlot(enum.IntEnum):
    """Lane boundary position relative to the ego vehicle, left to right (matches Lane.msg)."""

    LEFT_LEFT = 0
    LEFT = 1
    RIGHT = 2
    RIGHT_RIGHT = 3
    UNKNOWN = 255

    @classmethod
    def from_index(cls, index: int, num_lanes: int = 4) -> LaneSlot:
        """Map a network output channel (0-based lane index) to a slot.

        Four-slot models map one to one; other lane counts have no ego-relative meaning.
        """
        if num_lanes == 4 and 0 <= index < 4:
            return cls(index)
        return cls.UNKNOWN


@dataclass
class Lane:
    """One lane boundary.

    ``image_points``: float32 array (N, 2) of (x, y) pixels in the source image, ordered
    from the bottom row upwards. ``ground_points``: float32 array (M, 3) of (x forward,
    y left, z up) metres in the vehicle frame, or None when no camera model is known.
    ``index`` is the network's lane channel (0-based), kept for models with >4 lanes.
    """

    slot: LaneSlot
    confidence: float
    image_points: np.ndarray
    ground_points: np.ndarray | None = None
    index: int = -1

    def __post_init__(self) -> None:
        self.image_points = np.asarray(self.image_points, dtype=np.float32).reshape(-1, 2)
        if self.ground_points is not None:
            self.ground_points = np.asarray(self.ground_points, dtype=np.float32).reshape(-1, 3)
        if self.index < 0:
            self.index = int(self.slot) if self.slot != LaneSlot.UNKNOWN else -1

    def x_at_rows(self, rows: np.ndarray) -> np.ndarray:
        """x of the polyline at each image row, -2 outside its vertical extent (TuSimple style)."""
        if len(self.image_points) < 2:
            return np.full(np.shape(rows), -2.0, dtype=np.float32)
        return lane_x_at_rows(self.image_points, rows)


def lane_x_at_rows(lane: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x of an (N, 2) x,y polyline at ``rows`` by linear interpolation, -2 outside its vertical extent."""
    rows = np.asarray(rows, dtype=np.float32)
    out = np.full(rows.shape, -2.0, dtype=np.float32)
    lane = np.asarray(lane, dtype=np.float32).reshape(-1, 2)
    if len(lane) == 0:
        return out
    pts = lane[np.argsort(lane[:, 1], kind="stable")]
    inside = (rows >= pts[0, 1]) & (rows <= pts[-1, 1])
    out[inside] = np.interp(rows[inside], pts[:, 1], pts[:, 0])
    return out


@dataclass
class LaneDetections:
    """Everything the Detector says about one image."""

    lanes: list[Lane]
    image_width: int
    image_height: int
    model_name: str = ""
    weights_name: str = ""
    latency_ms: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    # (L,) calibrated existence probability of every network lane channel, reported or not (None: unknown).
    exist_prob: np.ndarray | None = None
