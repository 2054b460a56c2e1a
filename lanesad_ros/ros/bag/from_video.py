"""A video file -> bag of its frames (no ground truth)."""
from __future__ import annotations

from pathlib import Path

import cv2

from lanesad_ros.ros.bag.typestore import BagError
from lanesad_ros.ros.bag.writer import write_frames


def from_video(video: str | Path, out: str | Path, rate_hz: float | None = None, **kwargs) -> int:
    """A video file -> bag of its frames (no ground truth) at its own frame rate unless given."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise BagError(f"cannot open video {video}")
    fps = rate_hz or cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None

    def gen():
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame, None

    try:
        n = write_frames(out, gen(), rate_hz=fps, total=total, desc="video", **kwargs)
    finally:
        cap.release()
    if n == 0:
        raise BagError(f"video {video} has no readable frames")
    return n
