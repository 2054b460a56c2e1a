"""A video file (or an image sequence OpenCV can open) -> bag of its frames (no ground truth)."""
from __future__ import annotations

from pathlib import Path

import cv2

from lanesad_ros.ros.bag.typestore import NOMINAL_RATE_HZ, BagError
from lanesad_ros.ros.bag.writer import nominal_timing, write_frames

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def from_video(video: str | Path, out: str | Path, rate_hz: float | None = None, **kwargs) -> int:
    """A video file -> bag of its frames (no ground truth), stamped with the video's own frame times.

    Times come from the container (``CAP_PROP_POS_MSEC`` of each decoded frame), so variable frame
    rates survive; a frame without a usable time (not after the previous one) is placed one frame
    period after it, and counted. An image sequence (``frame_%04d.png``) has no times: it is stamped at
    a nominal rate (``rate_hz``, default 10 Hz), as is any video when ``rate_hz`` is given. The bag's
    ``lanesad_ros.timing`` says which.
    """
    if "%" not in Path(str(video)).name and not Path(video).is_file():  # an image sequence's pattern names no file
        raise BagError(f"no such video file: {video}")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise BagError(f"cannot open video {video} (not a video OpenCV can decode)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    total = total if total > 0 else None
    name = Path(str(video)).name
    if rate_hz is not None:
        timing = nominal_timing(rate_hz, "--rate given: frames at that rate instead of the video's own times")
    elif Path(name).suffix.lower() in IMAGE_SUFFIXES or "%" in name:
        rate_hz = NOMINAL_RATE_HZ
        timing = nominal_timing(rate_hz, "an image sequence carries no frame times")
    else:
        timing = {"kind": "source", "source": "video frame times (CAP_PROP_POS_MSEC)", "fps": fps}
    step_ms = 1000.0 / (fps if fps > 0 else NOMINAL_RATE_HZ)

    def gen():
        last = None
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            if timing["kind"] != "source":
                yield frame, None
                continue
            t = cap.get(cv2.CAP_PROP_POS_MSEC)
            if last is not None and not t > last:  # no usable container time for this frame
                t = last + step_ms
                timing["frames_timed_by_frame_rate"] = timing.get("frames_timed_by_frame_rate", 0) + 1
            last = t
            yield frame, None, int(round(t * 1e6))

    try:
        n = write_frames(out, gen(), rate_hz=rate_hz or (fps if fps > 0 else NOMINAL_RATE_HZ), total=total,
                         desc="video", timing=timing, **kwargs)
    finally:
        cap.release()
    if n == 0:
        raise BagError(f"video {video} has no readable frames")
    return n
