"""CULane folder + list file -> bag with images and ground truth (scene category kept)."""
from __future__ import annotations

from pathlib import Path

from lanesad_ros.data.culane import read_culane_list
from lanesad_ros.data.frames import assign_slots
from lanesad_ros.ros.bag.writer import write_frames


def from_culane(root: str | Path, list_file: str | Path, out: str | Path, **kwargs) -> int:
    """CULane folder + list file -> bag with images and ground truth (scene category kept)."""
    frames = read_culane_list(list_file, root=root)

    def gen():
        for f in frames:
            img = f.load_image()
            if img.shape[1] != 1640:  # slots were assigned assuming CULane's width
                f.slots = assign_slots(f.lanes, img.shape[1])
            yield img, f

    return write_frames(out, gen(), total=len(frames), desc="culane", **kwargs)
