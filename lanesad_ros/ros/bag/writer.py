"""Writing bags: Image / CompressedImage / LaneArray messages, ``BagWriter``, ``write_frames``, ``remove_bag``.

Ground truth goes to a LaneArray topic (default ``/lanes_gt``) whose header stamps equal the
images', stored as ``ground_truth`` describes (exact label points, empty lanes, per-frame h_samples
and category). How the frame times were obtained (the source's own, or nominal) goes into the bag's
custom metadata as ``lanesad_ros.timing``.
"""
from __future__ import annotations

import json
import shutil
import struct
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from lanesad_ros.ros.bag.ground_truth import GroundTruthIndex, ground_truth_lanes
from lanesad_ros.ros.bag.typestore import (
    COMPRESSED_TYPE,
    DEFAULT_GT_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    GROUND_TRUTH_KEY,
    IMAGE_TYPE,
    LANE_ARRAY_TYPE,
    LANE_TYPE,
    NOMINAL_RATE_HZ,
    START_NS,
    STORAGES,
    TIMING_KEY,
    BagError,
    typestore,
)


def _stamp(ns: int):
    ts = typestore()
    return ts.types["builtin_interfaces/msg/Time"](sec=int(ns // 10**9), nanosec=int(ns % 10**9))


def _header(ns: int, frame_id: str):
    return typestore().types["std_msgs/msg/Header"](stamp=_stamp(ns), frame_id=frame_id)


def image_message(bgr: np.ndarray, stamp_ns: int, frame_id: str, compressed: bool = False, quality: int = 90):
    """A rosbags sensor_msgs Image (bgr8) or CompressedImage (jpeg) dataclass."""
    ts = typestore()
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise BagError(f"expected an HxWx3 uint8 BGR image, got {bgr.dtype} {bgr.shape}")
    header = _header(stamp_ns, frame_id)
    if compressed:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise BagError("JPEG encoding failed")
        return ts.types[COMPRESSED_TYPE](header=header, format="jpeg", data=buf.reshape(-1))
    h, w = bgr.shape[:2]
    data = np.ascontiguousarray(bgr).reshape(-1)
    return ts.types[IMAGE_TYPE](header=header, height=h, width=w, encoding="bgr8", is_bigendian=0,
                                step=w * 3, data=data)


def lane_array_message(lanes: Iterable[np.ndarray], slots: Iterable[int], stamp_ns: int, frame_id: str,
                       size: tuple[int, int], model_name: str = "ground_truth"):
    """A rosbags LaneArray dataclass from (N, 2) point arrays and slots, lanes in the given order, each lane's
    points bottom -> top (a lane may have no points: see ``ground_truth``)."""
    ts = typestore()
    lane_cls, p32 = ts.types[LANE_TYPE], ts.types["geometry_msgs/msg/Point32"]
    msgs = []
    for pts, slot in zip(lanes, slots, strict=True):
        pts = np.asarray(pts, dtype=np.float32).reshape(-1, 2)
        pts = pts[np.argsort(-pts[:, 1], kind="stable")]
        msgs.append(lane_cls(slot=int(slot), confidence=1.0,
                             image_points=[p32(x=float(x), y=float(y), z=0.0) for x, y in pts], ground_points=[]))
    return ts.types[LANE_ARRAY_TYPE](header=_header(stamp_ns, frame_id), image_width=int(size[0]),
                                     image_height=int(size[1]), ground_frame_id="", model_name=model_name,
                                     weights_name="", inference_latency_ms=0.0, lanes=msgs)


class BagWriter:
    """Writes camera frames (+ optional ground truth) into a new rosbag2 folder.

    ``with BagWriter(out, storage="mcap") as w: w.write(bgr, stamp_ns, ground_truth)``;
    ground truth is a LabelledFrame (or anything with ``lanes``/``slots``) and is written
    to ``gt_topic`` with the image's stamp, as ``ground_truth`` describes. ``timing``: how the
    frame times were obtained, stored as ``lanesad_ros.timing`` (see ``write_frames``). The bag
    is finalised even when an exception escapes, so the frames written stay readable; a bag that
    an exception ends before its first frame is removed (nothing in it, and it would block the
    retry with "already exists").
    """

    def __init__(self, path: str | Path, storage: str = "mcap", image_topic: str | None = None,
                 compressed: bool = False, gt_topic: str = DEFAULT_GT_TOPIC, frame_id: str = "camera",
                 jpeg_quality: int = 90, timing: dict | None = None) -> None:
        # Lazy: rosbags is an optional dependency (setup.py extra "eval"); only bag work needs it.
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r} (choose from {', '.join(STORAGES)})")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"output bag {self.path} already exists; remove it or choose another path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self.compressed = compressed
        self.frame_id = frame_id
        self.quality = jpeg_quality
        # image_transport's convention: compressed frames live on <topic>/compressed.
        self.image_topic = image_topic or (DEFAULT_IMAGE_TOPIC + "/compressed" if compressed else DEFAULT_IMAGE_TOPIC)
        self.gt_topic = gt_topic
        self._image_type = COMPRESSED_TYPE if compressed else IMAGE_TYPE
        self._image_conn = self._writer.add_connection(self.image_topic, self._image_type, typestore=typestore())
        self._gt_conn = None
        self._gt_index = GroundTruthIndex()
        self.timing = timing
        self.frames = 0

    def write(self, bgr: np.ndarray, stamp_ns: int, ground_truth: Any = None, bag_time_ns: int | None = None) -> None:
        """One image with header stamp ``stamp_ns`` (+ its ground truth), recorded at ``bag_time_ns``
        (default: the stamp; a camera that leaves stamps empty still has real receive times)."""
        ts = typestore()
        bag_time = stamp_ns if bag_time_ns is None else int(bag_time_ns)
        msg = image_message(bgr, stamp_ns, self.frame_id, self.compressed, self.quality)
        self._writer.write(self._image_conn, bag_time, ts.serialize_cdr(msg, self._image_type))
        if ground_truth is not None:
            if self._gt_conn is None:
                self._gt_conn = self._writer.add_connection(self.gt_topic, LANE_ARRAY_TYPE, typestore=ts)
            lanes = ground_truth_lanes(ground_truth, bgr.shape[1])
            gt = lane_array_message([p for p, _ in lanes], [s for _, s in lanes], stamp_ns, self.frame_id,
                                    (bgr.shape[1], bgr.shape[0]))
            self._writer.write(self._gt_conn, bag_time, ts.serialize_cdr(gt, LANE_ARRAY_TYPE))
            self._gt_index.add(getattr(ground_truth, "h_samples", None),
                               getattr(ground_truth, "meta", {}).get("category"))
        self.frames += 1

    def close(self) -> None:
        if len(self._gt_index):
            self._writer.set_custom_data(GROUND_TRUTH_KEY, self._gt_index.to_json())
        if self.timing is not None:
            self._writer.set_custom_data(TIMING_KEY, json.dumps(self.timing))
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if exc_type is not None and self.frames == 0:
            remove_bag(self.path)


def _progress(it, total: int | None, desc: str):
    return tqdm(it, total=total, desc=desc, unit="frame", file=sys.stderr, disable=not sys.stderr.isatty())


def nominal_timing(rate_hz: float, reason: str) -> dict:
    """``lanesad_ros.timing`` of a bag whose frame times are made up at ``rate_hz`` (the source has none)."""
    return {"kind": "nominal", "rate_hz": float(rate_hz), "reason": reason}


def timing_warning(timing_json: str | None) -> str | None:
    """What to tell the user about a bag's ``lanesad_ros.timing``; None when times are the source's own."""
    timing = json.loads(timing_json) if timing_json else {}
    if timing.get("kind") == "nominal":
        return (f"{timing.get('reason')}: frames stamped at a nominal {timing.get('rate_hz')} Hz "
                f"(recorded in the bag as {TIMING_KEY})")
    if timing.get("frames_timed_by_frame_rate"):
        return (f"{timing['frames_timed_by_frame_rate']} frames had no usable time in the video: "
                f"spaced by its frame rate (recorded in the bag as {TIMING_KEY})")
    return None


def write_frames(out: str | Path, frames: Iterable[tuple], storage: str = "mcap", compressed: bool = False,
                 rate_hz: float = NOMINAL_RATE_HZ, image_topic: str | None = None, gt_topic: str = DEFAULT_GT_TOPIC,
                 total: int | None = None, desc: str = "bag", timing: dict | None = None) -> int:
    """Write (bgr, ground truth or None[, source time ns]) tuples as a bag; returns frames written.

    A frame's header stamp and bag time are START_NS plus its source time (from the first frame's) when
    given, else plus index / ``rate_hz``. ``timing`` (stored as ``lanesad_ros.timing``) says which:
    {"kind": "source", ...} or ``nominal_timing(...)``; default: nominal at ``rate_hz``.
    """
    if rate_hz <= 0:
        raise BagError(f"rate must be positive, got {rate_hz}")
    period = int(round(1e9 / rate_hz))
    timing = timing or nominal_timing(rate_hz, "the source gives no frame times")
    with BagWriter(out, storage=storage, image_topic=image_topic, compressed=compressed, gt_topic=gt_topic,
                   timing=timing) as w:
        t0 = None
        for i, item in enumerate(_progress(frames, total, desc)):
            bgr, gt = item[0], item[1]
            t = item[2] if len(item) > 2 else None
            if t is not None:
                t0 = t if t0 is None else t0
                stamp = START_NS + int(t - t0)
            else:
                stamp = START_NS + i * period
            w.write(bgr, stamp, gt)
        return w.frames


def restamp_cdr(data: bytes, stamp_ns: int) -> bytes:
    """CDR bytes of a message that starts with a std_msgs/Header (Image, CompressedImage, LaneArray)
    with the header stamp replaced by ``stamp_ns``; the rest is unchanged."""
    if len(data) < 12 or data[0] != 0 or data[1] not in (0, 1):
        raise BagError("restamp: not a plain CDR message (unexpected encapsulation header)")
    out = bytearray(data)
    struct.pack_into("<iI" if data[1] == 1 else ">iI", out, 4, int(stamp_ns // 10**9), int(stamp_ns % 10**9))
    return bytes(out)


def remove_bag(path: Path) -> None:
    """Delete an existing bag folder, refusing anything that holds more than a bag's files."""
    if not path.exists():
        return
    if not path.is_dir():
        raise BagError(f"{path} exists and is not a bag folder; not overwriting it")
    strays = [p.name for p in path.iterdir()
              if not (p.is_file() and (p.name == "metadata.yaml" or p.suffix in (".mcap", ".db3")))]
    if strays:
        raise BagError(f"{path} holds more than a bag ({', '.join(sorted(strays)[:5])}); not overwriting it")
    shutil.rmtree(path)
