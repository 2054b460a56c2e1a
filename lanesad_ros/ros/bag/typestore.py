"""What reader and writer share: the topic and type names, custom-data keys, BagError, and the rosbags typestore
that knows ``lanesad_ros/msg/Lane``, ``LaneArray`` and the LaneModel types (read from the package's ``msg/`` files).

Built on ``rosbags`` only (no rclpy).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import lanesad_ros

IMAGE_TYPE = "sensor_msgs/msg/Image"


COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"


IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)


LANE_TYPE = "lanesad_ros/msg/Lane"


LANE_ARRAY_TYPE = "lanesad_ros/msg/LaneArray"


DEFAULT_IMAGE_TOPIC = "/image_raw"


DEFAULT_GT_TOPIC = "/lanes_gt"


GROUND_TRUTH_KEY = "lanesad_ros.ground_truth"  # JSON: per ground-truth message h_samples and category (ground_truth.py)


H_SAMPLES_KEY = "lanesad_ros.h_samples"  # older bags: one JSON list of h_samples for every frame


CATEGORIES_KEY = "lanesad_ros.categories"  # older bags: JSON {header stamp ns: CULane scene category}


TIMING_KEY = "lanesad_ros.timing"  # JSON: how the frame times were obtained (writer.write_frames)


NOMINAL_RATE_HZ = 10.0  # frame rate given to sources without frame times (label sets, image sequences)


STORAGES = ("mcap", "sqlite3")


# Converted bags start at a fixed time so the same input always gives the same bag.
START_NS = 1_700_000_000 * 10**9


class BagError(RuntimeError):
    """A bag that cannot be read or written as asked; the message names the bag and the problem."""


def find_msg_dir() -> Path:
    """Folder with Lane.msg / LaneArray.msg: the source tree, or share/lanesad_ros/msg of an install."""
    candidates = [Path(p).parent / "msg" for p in lanesad_ros.__path__]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "lanesad_ros" / "msg")
    for cand in candidates:
        if (cand / "LaneArray.msg").is_file() and (cand / "Lane.msg").is_file():
            return cand
    raise BagError("cannot find msg/Lane.msg and msg/LaneArray.msg (looked in: "
                   + ", ".join(str(c) for c in candidates) + ")")


@lru_cache(maxsize=1)
def typestore():
    """A ROS 2 typestore with sensor_msgs etc. plus our types (LaneArray, Lane; LaneModel, LaneBoundary, EgoLane)."""
    # Lazy: rosbags is an optional dependency (setup.py extra "eval"); only bag work needs it.
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    msg_dir = find_msg_dir()
    types = {}
    for name in ("Lane", "LaneArray", "LaneBoundary", "EgoLane", "LaneModel"):
        types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"lanesad_ros/msg/{name}"))
    store.register(types)
    return store
