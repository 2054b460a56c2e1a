"""rosbag2 bags (sqlite3 or mcap) in and out, with or without a ROS distribution.

Built on ``rosbags`` only (no rclpy), so recorded drives can be converted and evaluated on
any machine. A bag holds camera images (sensor_msgs/Image or CompressedImage) and,
optionally, ground truth as a ``lanesad_ros/msg/LaneArray`` topic (default ``/lanes_gt``)
whose header stamps equal the images'. TuSimple-style ground truth also records its
h_samples in the bag's custom metadata so scores are exact.

A damaged bag (truncated file, missing topic, unknown type) never hides the frames that
can still be read: they are yielded, and the problem is appended to ``BagReader.problems``.

CLI ``lanesad-bag``: from-tusimple, from-culane, from-video, synthetic, info.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import shutil
import sqlite3
import struct
import sys
import tempfile
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import cv2
import numpy as np

from lanesad_ros.data.frames import LabelledFrame, assign_slots
from lanesad_ros.lanes import LaneDetections
from lanesad_ros.metrics.tusimple import infer_h_samples
from lanesad_ros.ros.convert import stamp_to_ns

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
LANE_TYPE = "lanesad_ros/msg/Lane"
LANE_ARRAY_TYPE = "lanesad_ros/msg/LaneArray"
DEFAULT_IMAGE_TOPIC = "/image_raw"
DEFAULT_GT_TOPIC = "/lanes_gt"
H_SAMPLES_KEY = "lanesad_ros.h_samples"
CATEGORIES_KEY = "lanesad_ros.categories"  # JSON {header stamp ns: CULane scene category}
STORAGES = ("mcap", "sqlite3")
# Converted bags start at a fixed time so the same input always gives the same bag.
START_NS = 1_700_000_000 * 10**9
_MCAP_MAGIC = b"\x89MCAP0\r\n"


class BagError(RuntimeError):
    """A bag that cannot be read or written as asked; the message names the bag and the problem."""


class BagFrame(NamedTuple):
    """One camera frame from a bag. ``ground_truth`` is a LabelledFrame or None."""

    timestamp_ns: int  # bag (receive) time
    image: np.ndarray  # BGR uint8
    stamp_ns: int  # header stamp
    frame_id: str
    ground_truth: LabelledFrame | None


# --- message types ----------------------------------------------------------------------

def find_msg_dir() -> Path:
    """Folder with Lane.msg / LaneArray.msg: the source tree, or share/lanesad_ros/msg of an install."""
    import lanesad_ros

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
    """A ROS 2 typestore with sensor_msgs etc. plus our LaneArray / Lane types."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    msg_dir = find_msg_dir()
    types = {}
    for name in ("Lane", "LaneArray"):
        types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"lanesad_ros/msg/{name}"))
    store.register(types)
    return store


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
    for pts, slot in zip(lanes, slots):
        pts = np.asarray(pts, dtype=np.float32).reshape(-1, 2)
        pts = pts[np.argsort(-pts[:, 1], kind="stable")]
        msgs.append(lane_cls(slot=int(slot), confidence=1.0,
                             image_points=[p32(x=float(x), y=float(y), z=0.0) for x, y in pts], ground_points=[]))
    msgs.sort(key=lambda m: m.slot)
    return ts.types[LANE_ARRAY_TYPE](header=_header(stamp_ns, frame_id), image_width=int(size[0]),
                                     image_height=int(size[1]), ground_frame_id="", model_name=model_name,
                                     weights_name="", inference_latency_ms=0.0, lanes=msgs)


# --- writing ------------------------------------------------------------------------------

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

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- reading ------------------------------------------------------------------------------

class _Conn(NamedTuple):
    """The parts of a rosbags Connection we use, whichever reader produced it."""

    topic: str
    msgtype: str
    msgdef: str
    raw: Any  # the reader's own connection object


def _storage_file(path: Path) -> tuple[str, list[Path]]:
    """(storage id, data files) of a bag folder or a single .mcap/.db3 file."""
    if path.is_file():
        return ("mcap" if path.suffix == ".mcap" else "sqlite3"), [path]
    files = sorted(path.glob("*.mcap")) or sorted(path.glob("*.db3"))
    if not files:
        raise BagError(f"{path}: no .mcap or .db3 file in the bag folder")
    return ("mcap" if files[0].suffix == ".mcap" else "sqlite3"), files


class _RosbagsSource:
    """The normal path: rosbags' Reader."""

    def __init__(self, path: Path) -> None:
        from rosbags.rosbag2 import Reader

        self.reader = Reader(path)
        self.reader.open()
        self.connections = [_Conn(c.topic, c.msgtype, getattr(c.msgdef, "data", "") or "", c)
                            for c in self.reader.connections]
        self.counts = Counter()
        for c in self.reader.connections:
            self.counts[c.topic] += c.msgcount
        self.custom = dict(getattr(self.reader.storage.metadata, "custom", None) or {})
        self.duration_ns = self.reader.duration if self.reader.message_count else 0

    def messages(self, conns: list[_Conn]) -> Iterator[tuple[_Conn, int, bytes]]:
        by_raw = {id(c.raw): c for c in conns}
        for raw, timestamp, data in self.reader.messages(connections=[c.raw for c in conns]):
            yield by_raw[id(raw)], timestamp, data

    def close(self) -> None:
        self.reader.close()


class _McapRecovery:
    """Reads the complete records of a damaged MCAP file (its summary/index is lost).

    Walks the data section record by record (memory-mapped); chunks are opened, and the
    complete records of a cut uncompressed chunk are still used. Stops at the damage.
    """

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.buf = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        if self.buf[:8] != _MCAP_MAGIC:
            self.close()
            raise BagError(f"{path}: not an MCAP file (bad magic)")
        self.path = path
        self.stop_reason = ""
        self._schemas: dict[int, tuple[str, str]] = {}
        self._channels: dict[int, _Conn] = {}
        self._index: list[tuple] = []  # (log time, order, channel id, buffer, start, end)
        self._scan(self.buf, 8, len(self.buf), top=True)
        self._index.sort(key=lambda e: (e[0], e[1]))
        self.connections = list(self._channels.values())
        counts = Counter(self._channels[e[2]].topic for e in self._index)
        self.counts = counts
        self.custom: dict = {}
        self.duration_ns = 0

    def _scan(self, buf: Any, pos: int, end: int, top: bool) -> bool:
        """Collect schemas, channels and message locations; False once damage is met."""
        while pos < end:
            if pos + 9 > end:
                self.stop_reason = f"record header cut at byte {pos}"
                return False
            op = buf[pos]
            (length,) = struct.unpack_from("<Q", buf, pos + 1)
            body, nxt = pos + 9, pos + 9 + length
            if op in (0x02, 0x0F):  # footer, data end
                return True
            if nxt > end:
                self.stop_reason = f"record (op 0x{op:02x}) at byte {pos} cut by the end of the file"
                if op == 0x06 and top:
                    self._chunk(buf, body, end, cut=True)
                return False
            if op == 0x03:
                (sid,) = struct.unpack_from("<H", buf, body)
                name, q = _mcap_string(buf, body + 2)
                _, q = _mcap_string(buf, q)  # encoding
                (dlen,) = struct.unpack_from("<I", buf, q)
                self._schemas[sid] = (name, bytes(buf[q + 4:q + 4 + dlen]).decode("utf-8", "replace"))
            elif op == 0x04:
                cid, sid = struct.unpack_from("<HH", buf, body)
                topic, _ = _mcap_string(buf, body + 4)
                name, msgdef = self._schemas.get(sid, ("", ""))
                self._channels[cid] = _Conn(topic, name, msgdef, cid)
            elif op == 0x05:
                (cid,) = struct.unpack_from("<H", buf, body)
                (log_time,) = struct.unpack_from("<Q", buf, body + 6)
                self._index.append((log_time, len(self._index), cid, buf, body + 22, nxt))
            elif op == 0x06 and top:
                if not self._chunk(buf, body, nxt, cut=False):
                    return False
            pos = nxt
        return True

    def _chunk(self, buf: Any, body: int, end: int, cut: bool) -> bool:
        from rosbags.rosbag2.storage_mcap import decompress

        usize, crc = struct.unpack_from("<QI", buf, body + 16)
        compression, q = _mcap_string(buf, body + 28)
        (csize,) = struct.unpack_from("<Q", buf, q)
        start = q + 8
        if compression == "":
            inner_end = min(start + csize, end)
            ok = self._scan(buf, start, inner_end, top=False)
            return ok and not cut
        if cut:
            self.stop_reason += f" (a {compression} chunk: its messages are lost)"
            return False
        inner = decompress(bytes(buf[start:start + csize]), compression, usize, crc)
        return self._scan(inner, 0, len(inner), top=False)

    def messages(self, conns: list[_Conn]) -> Iterator[tuple[_Conn, int, bytes]]:
        wanted = {c.raw: c for c in conns}
        for log_time, _, cid, buf, start, end in self._index:
            if cid in wanted:
                yield wanted[cid], log_time, bytes(buf[start:end])

    def close(self) -> None:
        if getattr(self, "buf", None) is not None:
            self._index = []
            self.buf.close()
            self.buf = None
        self._file.close()


def _mcap_string(buf: Any, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    return bytes(buf[pos + 4:pos + 4 + n]).decode("utf-8", "replace"), pos + 4 + n


class _SqliteRecovery:
    """Reads the rows still readable from a truncated sqlite3 bag, in insertion order.

    SQLite refuses a file shorter than its header says; a temporary copy cut to whole pages
    with the header's page count corrected opens, and rows read until the first lost page.
    """

    def __init__(self, path: Path) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="lanesad_bag_recovery_")
        copy = Path(self._tmp.name) / path.name
        data = bytearray(path.read_bytes())
        if data[:16] != b"SQLite format 3\x00":
            self._tmp.cleanup()
            raise BagError(f"{path}: not an SQLite database (bad header)")
        (page,) = struct.unpack_from(">H", data, 16)
        page = 65536 if page == 1 else page
        del data[len(data) // page * page:]
        struct.pack_into(">I", data, 28, len(data) // page)
        copy.write_bytes(data)
        self.con = sqlite3.connect(f"file:{copy}?mode=ro", uri=True, check_same_thread=False)
        try:
            rows = self.con.execute("SELECT id, name, type FROM topics").fetchall()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise BagError(f"{path}: topics table unreadable ({exc})") from None
        defs = {}
        try:
            defs = dict(self.con.execute("SELECT topic_type, encoded_message_definition FROM message_definitions"))
        except sqlite3.DatabaseError:
            pass  # older bags have no definitions table; our own types are registered anyway
        self.connections = [_Conn(name, typ, defs.get(typ, ""), tid) for tid, name, typ in rows]
        self.counts = Counter()
        self.custom: dict = {}
        self.duration_ns = 0

    def messages(self, conns: list[_Conn]) -> Iterator[tuple[_Conn, int, bytes]]:
        by_id = {c.raw: c for c in conns}
        cur = self.con.execute(
            f"SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN ({','.join('?' * len(by_id))})",
            list(by_id))
        for tid, timestamp, data in cur:
            yield by_id[tid], timestamp, data

    def close(self) -> None:
        if getattr(self, "con", None) is not None:
            self.con.close()
            self.con = None
        self._tmp.cleanup()


def open_source(path: Path, problems: list[str]):
    """(storage id, message source) of a bag folder or file; falls back to recovery when damaged.

    A folder without metadata.yaml (a recording that died) is read from its data file; a
    file whose index or tail is damaged is read record by record up to the damage. What
    went wrong is appended to ``problems``.
    """
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    storage, files = _storage_file(path)
    errors = []
    for target in ([path, files[0]] if path.is_dir() else [path]):
        try:
            return storage, _RosbagsSource(target)
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for damage
            error = f"{type(exc).__name__}: {exc}"
            if error not in errors:
                errors.append(error)
    problem = f"{path}: bag damaged, reading what is left ({'; '.join(errors)})"
    if len(files) > 1:
        problem += f"; only the first of {len(files)} files is recovered"
    try:
        source = _McapRecovery(files[0]) if storage == "mcap" else _SqliteRecovery(files[0])
    except BagError as exc:
        raise BagError(f"{problem}; recovery failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any failure here means nothing is readable
        raise BagError(f"{problem}; recovery failed: {type(exc).__name__}: {exc}") from None
    if getattr(source, "stop_reason", ""):
        problem += f"; stopped at: {source.stop_reason}"
    problems.append(problem)
    source.expected_counts = _metadata_counts(path)
    return storage, source


def _metadata_counts(path: Path) -> dict[str, int]:
    """Message counts per topic that metadata.yaml promises (empty when it is unreadable)."""
    import yaml

    try:
        meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return {t["topic_metadata"]["name"]: int(t["message_count"]) for t in meta["topics_with_message_count"]}
    except Exception:  # noqa: BLE001 - only used to say how much was lost
        return {}


class BagReader:
    """Iterates a bag's camera frames with their ground truth.

    ``image_topic`` None picks the only image topic (or /image_raw among several).
    Ground truth comes from ``gt_topic`` when the bag has it, or from ``labels``: a list of
    LabelledFrames (or TuSimple label dicts) matched by header stamp when they carry
    ``meta["stamp_ns"]`` / ``"stamp_ns"``, else by frame index. Problems that do not stop
    reading (truncation, a ground-truth topic of the wrong type, undecodable messages) are
    appended to ``problems``, a bag without ground truth to ``notes``; a bag with no readable
    image topic raises BagError.
    """

    def __init__(self, path: str | Path, image_topic: str | None = None, gt_topic: str | None = DEFAULT_GT_TOPIC,
                 labels: list | None = None) -> None:
        self.path = Path(path)
        self.problems: list[str] = []
        self.notes: list[str] = []  # worth saying, but nothing is wrong (e.g. a bag without ground truth)
        self.storage, self.source = open_source(self.path, self.problems)
        self.custom = self.source.custom
        try:
            self._select_topics(image_topic, gt_topic, labels)
        except BaseException:
            self.source.close()
            raise
        # Image messages metadata.yaml promised, when the bag had to be recovered.
        self.expected_frames = getattr(self.source, "expected_counts", {}).get(self.image_topic)

    def _ensure_type(self, conn: _Conn) -> bool:
        """Register a type the store lacks from the bag's own definition; False if impossible."""
        from rosbags.typesys import get_types_from_msg

        store = typestore()
        if conn.msgtype in store.types:
            return True
        if conn.msgdef:
            try:
                store.register(get_types_from_msg(conn.msgdef, conn.msgtype))
                return True
            except Exception as exc:  # noqa: BLE001 - report, don't crash
                self.problems.append(f"topic {conn.topic}: cannot parse definition of {conn.msgtype} ({exc})")
                return False
        self.problems.append(f"topic {conn.topic}: unknown message type {conn.msgtype} (no definition in the bag)")
        return False

    def _select_topics(self, image_topic: str | None, gt_topic: str | None, labels: list | None) -> None:
        conns = self.source.connections
        topics = {c.topic: c.msgtype for c in conns}
        if image_topic is None:
            image_topics = sorted(t for t, ty in topics.items() if ty in IMAGE_TYPES)
            if not image_topics:
                raise BagError(f"{self.path}: no sensor_msgs Image or CompressedImage topic "
                               f"(topics: {self._describe(topics)})")
            preferred = [t for t in (DEFAULT_IMAGE_TOPIC, DEFAULT_IMAGE_TOPIC + "/compressed") if t in image_topics]
            if len(image_topics) > 1 and not preferred:
                raise BagError(f"{self.path}: several image topics ({', '.join(image_topics)}); pick one with --image-topic")
            image_topic = (preferred or image_topics)[0]
        if image_topic not in topics:
            raise BagError(f"{self.path}: image topic {image_topic!r} not in bag (topics: {self._describe(topics)})")
        if topics[image_topic] not in IMAGE_TYPES:
            raise BagError(f"{self.path}: topic {image_topic!r} has type {topics[image_topic]}, "
                           f"not sensor_msgs/msg/Image or CompressedImage")
        self.image_topic = image_topic
        self.image_type = topics[image_topic]
        self.image_conns = [c for c in conns if c.topic == image_topic]
        self.labels = labels
        self.gt_topic = None
        self.gt_conns: list[_Conn] = []
        if labels is None and gt_topic:
            if gt_topic not in topics:
                self.notes.append(f"ground-truth topic {gt_topic!r} not in bag: frames are not scored")
            elif topics[gt_topic] != LANE_ARRAY_TYPE:
                self.problems.append(f"ground-truth topic {gt_topic!r} has type {topics[gt_topic]}, "
                                     f"expected {LANE_ARRAY_TYPE}: frames are not scored")
            else:
                cands = [c for c in conns if c.topic == gt_topic]
                if all(self._ensure_type(c) for c in cands):
                    self.gt_topic, self.gt_conns = gt_topic, cands
        for c in self.image_conns:
            self._ensure_type(c)
        self.h_samples = None
        if H_SAMPLES_KEY in self.custom:
            try:
                self.h_samples = np.asarray(json.loads(self.custom[H_SAMPLES_KEY]), dtype=np.float64)
            except (ValueError, TypeError):
                self.problems.append(f"custom data {H_SAMPLES_KEY} is not a JSON list; h_samples inferred")

    @staticmethod
    def _describe(topics: dict) -> str:
        return ", ".join(f"{t} [{ty}]" for t, ty in sorted(topics.items())) or "none"

    @property
    def has_ground_truth(self) -> bool:
        return self.gt_topic is not None or self.labels is not None

    def __len__(self) -> int:
        """Image messages according to the bag's metadata (0 when unknown, e.g. recovered bags)."""
        return int(self.source.counts.get(self.image_topic, 0))

    def _read(self, conns: list[_Conn]) -> Iterator[tuple[int, Any, bytes]]:
        """(timestamp, deserialised message, CDR bytes) for conns; records errors, stops at truncation."""
        store = typestore()
        n = 0
        try:
            for conn, timestamp, data in self.source.messages(conns):
                try:
                    msg = store.deserialize_cdr(data, conn.msgtype)
                except Exception as exc:  # noqa: BLE001 - one bad message must not end the run
                    self.problems.append(f"{conn.topic} message at t={timestamp}: cannot deserialise ({exc})")
                    continue
                n += 1
                yield timestamp, msg, data
        except Exception as exc:  # noqa: BLE001 - truncated storage: keep what was read
            topics = ", ".join(sorted({c.topic for c in conns}))
            self.problems.append(f"{self.path}: reading {topics} stopped after {n} messages "
                                 f"({type(exc).__name__}: {exc})")

    def _ground_truth_by_stamp(self) -> dict[int, LabelledFrame]:
        from lanesad_ros.ros.convert import lane_array_to_detections

        gts: dict[int, LaneDetections] = {}
        for _, msg, _ in self._read(self.gt_conns):
            gts[stamp_to_ns(msg.header.stamp)] = lane_array_to_detections(msg)
        h = self.h_samples
        if h is None:
            h = infer_h_samples(y for det in gts.values() for lane in det.lanes for y in lane.image_points[:, 1])
        try:
            categories = json.loads(self.custom.get(CATEGORIES_KEY, "{}"))
        except ValueError:
            categories = {}
            self.problems.append(f"custom data {CATEGORIES_KEY} is not JSON; categories ignored")
        out = {}
        for stamp, det in gts.items():
            meta = {"source": f"{self.path}:{self.gt_topic}"}
            if str(stamp) in categories:
                meta["category"] = categories[str(stamp)]
            out[stamp] = LabelledFrame(image_path=None, image=None,
                                       lanes=[lane.image_points for lane in det.lanes],
                                       slots=[int(lane.slot) for lane in det.lanes], h_samples=h,
                                       width=det.image_width, height=det.image_height, meta=meta)
        return out

    def _labels_lookup(self):
        from lanesad_ros.data.tusimple import label_to_frame

        frames = [label_to_frame(l, None, f"label {i}") if isinstance(l, dict) else l
                  for i, l in enumerate(self.labels)]
        stamps = [f.meta.get("stamp_ns") if hasattr(f, "meta") else None for f in frames]
        if all(s is not None for s in stamps) and frames:
            by_stamp = {int(s): f for s, f in zip(stamps, frames)}
            return lambda index, stamp: by_stamp.get(stamp)
        return lambda index, stamp: frames[index] if index < len(frames) else None

    def serialized_images(self) -> Iterator[tuple[int, int, bytes]]:
        """(bag time, header stamp, CDR bytes) of every readable image: what replay publishes unchanged."""
        for timestamp, msg, data in self._read(self.image_conns):
            yield timestamp, stamp_to_ns(msg.header.stamp), bytes(data)

    def frames(self) -> Iterator[BagFrame]:
        """Every readable image as a BagFrame; undecodable images are skipped and recorded."""
        from lanesad_ros.ros.convert import image_msg_to_bgr

        lookup = None
        if self.gt_topic is not None:
            by_stamp = self._ground_truth_by_stamp()
            lookup = lambda index, stamp: by_stamp.get(stamp)  # noqa: E731
        elif self.labels is not None:
            lookup = self._labels_lookup()
        missing_gt = 0
        read = 0
        for index, (timestamp, msg, _) in enumerate(self._read(self.image_conns)):
            read += 1
            stamp = stamp_to_ns(msg.header.stamp)
            try:
                bgr = image_msg_to_bgr(msg)
            except Exception as exc:  # noqa: BLE001 - ImageConversionError and decoder errors
                self.problems.append(f"{self.image_topic} frame {index} (stamp {stamp}): {exc}")
                continue
            gt = lookup(index, stamp) if lookup else None
            if lookup and gt is None:
                missing_gt += 1
            yield BagFrame(timestamp, bgr, stamp, str(msg.header.frame_id), gt)
        if missing_gt:
            self.problems.append(f"{missing_gt} frames have no matching ground truth")
        if self.expected_frames is not None and self.expected_frames > read:
            self.problems.append(f"{self.path}: only {read} of {self.expected_frames} image messages "
                                 f"on {self.image_topic} were readable")

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bag_info(path: str | Path) -> dict:
    """Topics, types, counts, storage, duration, custom data and problems of a bag."""
    path = Path(path)
    problems: list[str] = []
    storage, source = open_source(path, problems)
    try:
        topics = {c.topic: {"type": c.msgtype, "count": int(source.counts.get(c.topic, 0))}
                  for c in source.connections}
        return {"path": str(path), "storage": storage, "duration_s": source.duration_ns / 1e9,
                "topics": topics, "custom_data": source.custom, "problems": problems}
    finally:
        source.close()


# --- converters ---------------------------------------------------------------------------

def _progress(it, total: int | None, desc: str):
    from tqdm import tqdm

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


def from_tusimple(root: str | Path, labels: str | Path, out: str | Path, **kwargs) -> int:
    """TuSimple folder + label file -> bag with images and ground truth (label order = frame order)."""
    from lanesad_ros.data.tusimple import read_tusimple_labels

    frames = read_tusimple_labels(labels, root)
    return write_frames(out, ((f.load_image(), f) for f in frames), total=len(frames), desc="tusimple", **kwargs)


def from_culane(root: str | Path, list_file: str | Path, out: str | Path, **kwargs) -> int:
    """CULane folder + list file -> bag with images and ground truth (scene category kept)."""
    from lanesad_ros.data.culane import read_culane_list

    frames = read_culane_list(list_file, root=root)

    def gen():
        for f in frames:
            img = f.load_image()
            if img.shape[1] != 1640:  # slots were assigned assuming CULane's width
                f.slots = assign_slots(f.lanes, img.shape[1])
            yield img, f

    return write_frames(out, gen(), total=len(frames), desc="culane", **kwargs)


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


def synthetic(out: str | Path, frames: int, seed: int = 0, geometry: str | Path | None = None,
              width: int = 1280, height: int = 720, **kwargs) -> int:
    """The project's synthetic road scenes -> bag with images and exact ground truth."""
    from lanesad_ros.data.synthetic import SceneGenerator

    gen = SceneGenerator(seed=seed, width=width, height=height, geometry=geometry)

    def scenes():
        for i in range(frames):
            f = gen.frame(i)
            yield f.image, f

    return write_frames(out, scenes(), total=frames, desc="synthetic", **kwargs)


# --- CLI ------------------------------------------------------------------------------------

def _add_output_args(p: argparse.ArgumentParser, rate: float | None = 10.0) -> None:
    p.add_argument("--storage", choices=STORAGES, default="mcap", help="rosbag2 storage format (default mcap)")
    p.add_argument("--compressed", action="store_true", help="write sensor_msgs/CompressedImage (jpeg)")
    p.add_argument("--rate", type=float, default=rate, help="frame rate of the bag's timestamps, Hz")
    p.add_argument("--image-topic", help=f"default {DEFAULT_IMAGE_TOPIC} (raw) or {DEFAULT_IMAGE_TOPIC}/compressed")
    p.add_argument("--gt-topic", default=DEFAULT_GT_TOPIC)
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag at OUT")


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


def _out_kwargs(a: argparse.Namespace) -> dict:
    kw = dict(storage=a.storage, compressed=a.compressed, image_topic=a.image_topic, gt_topic=a.gt_topic)
    if a.rate is not None:
        kw["rate_hz"] = a.rate
    return kw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lanesad-bag", description="Make and inspect rosbag2 drives for lanesad_ros.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("from-tusimple", help="TuSimple folder + label json -> bag with ground truth")
    p.add_argument("root", help="folder the labels' raw_file paths are relative to")
    p.add_argument("labels", help="TuSimple label file (json lines)")
    p.add_argument("out", help="output bag folder (must not exist)")
    _add_output_args(p)
    p = sub.add_parser("from-culane", help="CULane folder + list file -> bag with ground truth")
    p.add_argument("root")
    p.add_argument("list", help="CULane list file (image paths relative to ROOT)")
    p.add_argument("out")
    _add_output_args(p)
    p = sub.add_parser("from-video", help="video file -> bag (no ground truth)")
    p.add_argument("video")
    p.add_argument("out")
    _add_output_args(p, rate=None)
    p = sub.add_parser("synthetic", help="synthetic road scenes -> bag with ground truth")
    p.add_argument("out")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--geometry", help="TuSimple label file whose lane shapes drive the scenes")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    _add_output_args(p)
    p = sub.add_parser("info", help="topics, types, counts and problems of a bag")
    p.add_argument("bag")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    from lanesad_ros.data.frames import DataError

    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "overwrite", False):
            remove_bag(Path(args.out))
        if args.command == "info":
            info = bag_info(args.bag)
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                print(f"bag:      {info['path']} ({info['storage']})")
                print(f"duration: {info['duration_s']:.2f} s")
                for topic, t in sorted(info["topics"].items()):
                    print(f"  {topic:30s} {t['type']:40s} {t['count']:6d} msgs")
                for k, v in info["custom_data"].items():
                    print(f"custom:   {k} = {v[:80]}")
                for problem in info["problems"]:
                    print(f"PROBLEM:  {problem}")
            return 1 if info["problems"] else 0
        if args.command == "from-tusimple":
            n = from_tusimple(args.root, args.labels, args.out, **_out_kwargs(args))
        elif args.command == "from-culane":
            n = from_culane(args.root, args.list, args.out, **_out_kwargs(args))
        elif args.command == "from-video":
            n = from_video(args.video, args.out, **_out_kwargs(args))
        else:
            if args.frames <= 0:
                raise BagError(f"--frames must be positive, got {args.frames}")
            n = synthetic(args.out, args.frames, seed=args.seed, geometry=args.geometry, width=args.width,
                          height=args.height, **_out_kwargs(args))
        print(f"wrote {n} frames to {args.out}")
        return 0
    except (BagError, DataError) as exc:
        print(f"lanesad-bag: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
