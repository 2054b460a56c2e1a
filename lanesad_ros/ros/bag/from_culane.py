"""CULane folder + list file -> bag with images and ground truth (scene category kept)."""
from __future__ import annotations

from pathlib import Path

from lanesad_ros.data.culane import read_culane_list
from lanesad_ros.data.frames import assign_slots
from lanesad_ros.ros.bag.typestore import NOMINAL_RATE_HZ
from lanesad_ros.ros.bag.writer import nominal_timing, write_frames


def from_culane(root: str | Path, list_file: str | Path, out: str | Path, rate_hz: float = NOMINAL_RATE_HZ,
                **kwargs) -> int:
    """CULane folder + list file -> bag with images and ground truth (scene category kept).

    CULane lists carry no frame times: frames are stamped at a nominal ``rate_hz``, and the bag says so.
    """
    frames = read_culane_list(list_file, root=root)

    def gen():
        for f in frames:
            img = f.load_image()
            if img.shape[1] != 1640:  # slots were assigned assuming CULane's width
                f.slots = assign_slots(f.lanes, img.shape[1])
            yield img, f

    timing = nominal_timing(rate_hz, "CULane lists carry no frame times")
    return write_frames(out, gen(), rate_hz=rate_hz, total=len(frames), desc="culane", timing=timing, **kwargs)
