"""TuSimple folder + label file -> bag with images and ground truth."""
from __future__ import annotations

from pathlib import Path

from lanesad_ros.data.tusimple import read_tusimple_labels
from lanesad_ros.ros.bag.typestore import NOMINAL_RATE_HZ
from lanesad_ros.ros.bag.writer import nominal_timing, write_frames


def from_tusimple(root: str | Path, labels: str | Path, out: str | Path, rate_hz: float = NOMINAL_RATE_HZ,
                  **kwargs) -> int:
    """TuSimple folder + label file -> bag with images and ground truth (label order = frame order).

    TuSimple labels carry no frame times: frames are stamped at a nominal ``rate_hz``, and the bag says so.
    """
    frames = read_tusimple_labels(labels, root)
    timing = nominal_timing(rate_hz, "TuSimple labels carry no frame times")
    return write_frames(out, ((f.load_image(), f) for f in frames), rate_hz=rate_hz, total=len(frames),
                        desc="tusimple", timing=timing, **kwargs)
