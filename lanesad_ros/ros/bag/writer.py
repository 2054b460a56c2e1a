"""Writing bags: Image / CompressedImage / LaneArray messages, ``BagWriter``, ``write_frames``, ``remove_bag``.

Ground truth goes to a LaneArray topic (default ``/lanes_gt``) whose header stamps equal the
images'; TuSimple h_samples and CULane scene categories go into the bag's custom metadata.
"""
from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from lanesad_ros.data.frames import assign_slots
from lanesad_ros.ros.bag.typestore import (
    CATEGORIES_KEY,
    COMPRESSED_TYPE,
    DEFAULT_GT_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    H_SAMPLES_KEY,
    IMAGE_TYPE,
    LANE_ARRAY_TYPE,
    LANE_TYPE,
    START_NS,
    STORAGES,
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
    """A rosbags LaneArray dataclass from (N, 2) point arrays (bottom -> top) and slots."""
    ts = typestore()
    lane_cls, p32 = ts.types[LANE_TYPE], ts.types["geometry_msgs/msg/Point32"]
    msgs = []
    for pts, slot in zip(lanes, slots, strict=True):
        pts = np.asarray(pts, dtype=np.float32).reshape(-1, 2)
        pts = pts[np.argsort(-pts[:, 1], kind="stable")]
        msgs.append(lane_cls(slot=int(slot), confidence=1.0,
                             image_points=[p32(x=float(x), y=float(y), z=0.0) for x, y in pts], ground_points=[]))
    msgs.sort(key=lambda m: m.slot)
    return ts.types[LANE_ARRAY_TYPE](header=_header(stamp_ns, frame_id), image_width=int(size[0]),
                                     image_height=int(size[1]), ground_frame_id="", model_name=model_name,
                                     weights_name="", inference_latency_ms=0.0, lanes=msgs)


class BagWriter:
    """Writes camera frames (+ optional ground truth) into a new rosbag2 folder.

    ``with BagWriter(out, storage="mcap") as w: w.write(bgr, stamp_ns, ground_truth)``;
    ground truth is a LabelledFrame (or anything with ``lanes``/``slots``) and is written
    to ``gt_topic`` with the image's stamp. The bag is finalised even when an exception
    escapes, so whatever was written stays readable.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", image_topic: str | None = None,
                 compressed: bool = False, gt_topic: str = DEFAULT_GT_TOPIC, frame_id: str = "camera",
                 jpeg_quality: int = 90) -> None:
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
        self._h_samples: list[int] | None = None
        self._categories: dict[str, str] = {}
        self.frames = 0

    def write(self, bgr: np.ndarray, stamp_ns: int, ground_truth: Any = None) -> None:
        ts = typestore()
        msg = image_message(bgr, stamp_ns, self.frame_id, self.compressed, self.quality)
        self._writer.write(self._image_conn, stamp_ns, ts.serialize_cdr(msg, self._image_type))
        if ground_truth is not None:
            if self._gt_conn is None:
                self._gt_conn = self._writer.add_connection(self.gt_topic, LANE_ARRAY_TYPE, typestore=ts)
            lanes = [np.asarray(l, dtype=np.float32).reshape(-1, 2) for l in ground_truth.lanes]
            slots = getattr(ground_truth, "slots", None) or assign_slots(lanes, bgr.shape[1])
            gt = lane_array_message(lanes, slots, stamp_ns, self.frame_id, (bgr.shape[1], bgr.shape[0]))
            self._writer.write(self._gt_conn, stamp_ns, ts.serialize_cdr(gt, LANE_ARRAY_TYPE))
            h = getattr(ground_truth, "h_samples", None)
            if h is not None and self._h_samples is None:
                self._h_samples = [int(v) for v in np.asarray(h).reshape(-1)]
            category = getattr(ground_truth, "meta", {}).get("category")
            if category:
                self._categories[str(stamp_ns)] = str(category)
        self.frames += 1

    def close(self) -> None:
        if self._h_samples is not None:
            self._writer.set_custom_data(H_SAMPLES_KEY, json.dumps(self._h_samples))
        if self._categories:
            self._writer.set_custom_data(CATEGORIES_KEY, json.dumps(self._categories))
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _progress(it, total: int | None, desc: str):
    return tqdm(it, total=total, desc=desc, unit="frame", file=sys.stderr, disable=not sys.stderr.isatty())


def write_frames(out: str | Path, frames: Iterable[tuple[np.ndarray, Any]], storage: str = "mcap",
                 compressed: bool = False, rate_hz: float = 10.0, image_topic: str | None = None,
                 gt_topic: str = DEFAULT_GT_TOPIC, total: int | None = None, desc: str = "bag") -> int:
    """Write (bgr, ground truth or None) pairs as a bag at ``rate_hz``; returns frames written."""
    if rate_hz <= 0:
        raise BagError(f"rate must be positive, got {rate_hz}")
    period = int(round(1e9 / rate_hz))
    with BagWriter(out, storage=storage, image_topic=image_topic, compressed=compressed, gt_topic=gt_topic) as w:
        for i, (bgr, gt) in enumerate(_progress(frames, total, desc)):
            w.write(bgr, START_NS + i * period, gt)
        return w.frames


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
