"""Overlays: lanes drawn in slot colours on a copy, labels and text, bad images rejected."""
from __future__ import annotations

import numpy as np
import pytest

from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot
from lanesad_ros.overlay import SLOT_COLORS, draw_detections, draw_lanes

ROWS = np.arange(710.0, 300.0, -10.0)


def vertical_lane(x, slot, confidence=0.9):
    return Lane(slot=slot, confidence=confidence, image_points=np.stack([np.full_like(ROWS, x), ROWS], axis=1))


def test_lanes_are_drawn_in_slot_colours_on_a_copy():
    image = np.zeros((720, 1280, 3), np.uint8)
    lanes = [vertical_lane(300, LaneSlot.LEFT), vertical_lane(900, LaneSlot.RIGHT_RIGHT)]
    out = draw_lanes(image, lanes)
    assert out is not image and not image.any()
    assert tuple(out[500, 300]) == SLOT_COLORS[LaneSlot.LEFT]
    assert tuple(out[500, 900]) == SLOT_COLORS[LaneSlot.RIGHT_RIGHT]
    assert not out[500, 600].any()  # nothing between the lanes
    assert not out[100, 300].any()  # nothing above the lane's extent
    custom = draw_lanes(image, lanes[:1], colors={LaneSlot.LEFT: (1, 2, 3)})
    assert tuple(custom[500, 300]) == (1, 2, 3)


def test_confidence_label_and_text_add_pixels():
    image = np.zeros((360, 640, 3), np.uint8)
    lanes = [vertical_lane(200, LaneSlot.LEFT, 0.87)]
    plain = draw_lanes(image, lanes, show_confidence=False)
    labelled = draw_lanes(image, lanes, show_confidence=True)
    assert (labelled != plain).any()
    det = LaneDetections(lanes=lanes, image_width=640, image_height=360, model_name="enet_sad", latency_ms=12.5)
    with_text = draw_detections(image, det)
    assert with_text[:40, :300].any()  # the latency line, top-left
    assert not draw_detections(image, det, show_latency=False)[:40, :300].any()


def test_empty_and_bad_inputs():
    image = np.full((100, 100, 3), 7, np.uint8)
    np.testing.assert_array_equal(draw_lanes(image, []), image)
    with pytest.raises(ValueError, match="uint8"):
        draw_lanes(np.zeros((10, 10, 3), np.float32), [])
    with pytest.raises(ValueError, match="HxWx3"):
        draw_lanes(np.zeros((10, 10), np.uint8), [])
