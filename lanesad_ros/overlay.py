"""Lane overlays for the debug image topic, the demo video and evaluation reports."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot

# BGR colours, one per slot, distinct on grey roads and for the common colour-blindnesses.
SLOT_COLORS: dict[LaneSlot, tuple[int, int, int]] = {
    LaneSlot.LEFT_LEFT: (255, 170, 0),   # azure
    LaneSlot.LEFT: (0, 220, 0),          # green
    LaneSlot.RIGHT: (0, 200, 255),       # amber
    LaneSlot.RIGHT_RIGHT: (200, 0, 255),  # magenta
    LaneSlot.UNKNOWN: (200, 200, 200),   # grey
}
SLOT_LABELS = {LaneSlot.LEFT_LEFT: "LL", LaneSlot.LEFT: "L", LaneSlot.RIGHT: "R",
               LaneSlot.RIGHT_RIGHT: "RR", LaneSlot.UNKNOWN: "?"}


def draw_lanes(bgr: np.ndarray, lanes: Sequence[Lane], show_confidence: bool = True,
               colors: Mapping[LaneSlot, tuple[int, int, int]] | None = None, thickness: int | None = None,
               text: str | Sequence[str] | None = None) -> np.ndarray:
    """A copy of ``bgr`` with each lane as a polyline in its slot colour, labelled with its slot
    (and confidence) at its lowest point. ``text``: line(s) written top-left (latency, model).
    Line width and font scale follow the image size, so overlays read the same at any resolution."""
    if not isinstance(bgr, np.ndarray) or bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"draw_lanes needs an HxWx3 uint8 BGR image, got "
                         f"{getattr(bgr, 'shape', type(bgr).__name__)} {getattr(bgr, 'dtype', '')}")
    out = bgr.copy()
    palette = {**SLOT_COLORS, **(colors or {})}
    scale = max(out.shape[0], out.shape[1]) / 1280.0
    width = thickness or max(1, int(round(4 * scale)))
    font = 0.6 * max(scale, 0.4)
    for lane in lanes:
        pts = np.asarray(lane.image_points, dtype=np.float32)
        if len(pts) == 0:
            continue
        color = palette.get(lane.slot, SLOT_COLORS[LaneSlot.UNKNOWN])
        cv2.polylines(out, [np.rint(pts).astype(np.int32).reshape(-1, 1, 2)], False, color, width, cv2.LINE_AA)
        label = SLOT_LABELS.get(lane.slot, "?") + (f" {lane.confidence:.2f}" if show_confidence else "")
        anchor = np.rint(pts[0]).astype(int)
        x = int(np.clip(anchor[0] - 20 * scale, 0, out.shape[1] - 1))
        y = int(np.clip(anchor[1] - 10 * scale, 12 * scale, out.shape[0] - 1))
        _put_text(out, label, (x, y), font, color)
    if text:
        lines = [text] if isinstance(text, str) else list(text)
        for i, line in enumerate(lines):
            _put_text(out, line, (int(10 * scale) + 2, int((28 + 26 * i) * max(scale, 0.5))), font, (255, 255, 255))
    return out


def draw_detections(bgr: np.ndarray, detections: LaneDetections, show_confidence: bool = True,
                    show_latency: bool = True, **kwargs) -> np.ndarray:
    """``draw_lanes`` for a Detector result, with model name and latency written top-left."""
    text = None
    if show_latency:
        text = f"{detections.model_name or 'model'}  {detections.latency_ms:.1f} ms  {len(detections.lanes)} lanes"
    return draw_lanes(bgr, detections.lanes, show_confidence=show_confidence, text=text, **kwargs)


def _put_text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, color) -> None:
    """Text with a dark outline so it stays legible on bright road and sky.

    OpenCV 5 lays out glyphs differently at thickness 1 than at 2 and more, so the text is
    never drawn thinner than 2 or the outline and the text drift apart.
    """
    thick = max(2, int(round(2 * scale)))
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)
