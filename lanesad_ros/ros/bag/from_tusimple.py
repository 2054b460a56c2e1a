"""TuSimple folder + label file -> bag with images and ground truth."""
from __future__ import annotations

from pathlib import Path

from lanesad_ros.data.tusimple import read_tusimple_labels
from lanesad_ros.ros.bag.writer import write_frames


def from_tusimple(root: str | Path, labels: str | Path, out: str | Path, **kwargs) -> int:
    """TuSimple folder + label file -> bag with images and ground truth (label order = frame order)."""
    frames = read_tusimple_labels(labels, root)
    return write_frames(out, ((f.load_image(), f) for f in frames), total=len(frames), desc="tusimple", **kwargs)
