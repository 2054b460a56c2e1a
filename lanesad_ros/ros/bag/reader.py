"""Reading bags: ``BagReader`` yields camera frames (Image / CompressedImage) with ground truth; ``bag_info``.

A damaged bag (truncated file, missing topic, unknown type) never hides the frames that can
still be read: they are yielded, and the problem is appended to ``BagReader.problems``.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lanesad_ros.data.frames import LabelledFrame
from lanesad_ros.data.tusimple import label_to_frame
from lanesad_ros.ros.bag.ground_truth import GroundTruthIndex, frame_from_ground_truth
from lanesad_ros.ros.bag.matching import match_frames
from lanesad_ros.ros.bag.storage import _Conn, open_source
from lanesad_ros.ros.bag.typestore import (
    DEFAULT_GT_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    IMAGE_TYPES,
    LANE_ARRAY_TYPE,
    BagError,
    typestore,
)
from lanesad_ros.ros.convert import image_msg_to_bgr, lane_array_to_detections, stamp_to_ns


class BagFrame(NamedTuple):
    """One camera frame from a bag. ``ground_truth`` is a LabelledFrame or None."""

    timestamp_ns: int  # bag (receive) time
    image: np.ndarray  # BGR uint8
    stamp_ns: int  # header stamp
    frame_id: str
    ground_truth: LabelledFrame | None


class BagReader:
    """Iterates a bag's camera frames with their ground truth.

    ``image_topic`` None picks the only image topic (or /image_raw among several).
    Ground truth comes from ``gt_topic`` when the bag has it (paired with the images as
    ``ground_truth_for_frames`` says), or from ``labels``: a list of LabelledFrames (or TuSimple
    label dicts) matched by header stamp when they carry ``meta["stamp_ns"]``, else by frame
    index. Problems that do not stop reading (truncation, a ground-truth topic of the wrong
    type, undecodable messages, frames whose ground truth cannot be told apart) are appended to
    ``problems``, a bag without ground truth to ``notes``; a bag with no readable image topic
    raises BagError.
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
        # Lazy: rosbags is an optional dependency (setup.py extra "eval"); only bag work needs it.
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
                raise BagError(f"{self.path}: several image topics ({', '.join(image_topics)}); "
                               "pick one with --image-topic")
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

    @staticmethod
    def _describe(topics: dict) -> str:
        return ", ".join(f"{t} [{ty}]" for t, ty in sorted(topics.items())) or "none"

    @property
    def has_ground_truth(self) -> bool:
        return self.gt_topic is not None or self.labels is not None

    def __len__(self) -> int:
        """Image messages according to the bag's metadata (0 when unknown, e.g. recovered bags)."""
        return int(self.source.counts.get(self.image_topic, 0))

    def _read(self, conns: list[_Conn], quiet: bool = False) -> Iterator[tuple[int, Any, bytes]]:
        """(timestamp, deserialised message, CDR bytes) for conns; records errors (unless ``quiet``: a
        second pass over the same messages), stops at truncation."""
        store = typestore()
        n = 0
        try:
            for conn, timestamp, data in self.source.messages(conns):
                try:
                    msg = store.deserialize_cdr(data, conn.msgtype)
                except Exception as exc:  # noqa: BLE001 - one bad message must not end the run
                    if not quiet:
                        self.problems.append(f"{conn.topic} message at t={timestamp}: cannot deserialise ({exc})")
                    continue
                n += 1
                yield timestamp, msg, data
        except Exception as exc:  # noqa: BLE001 - truncated storage: keep what was read
            if not quiet:
                topics = ", ".join(sorted({c.topic for c in conns}))
                self.problems.append(f"{self.path}: reading {topics} stopped after {n} messages "
                                     f"({type(exc).__name__}: {exc})")

    def image_keys(self) -> list[tuple[int, int]]:
        """(bag time, header stamp) of every readable image message, in recording order (the frame
        ``index`` of ``frames()``), without decoding the images."""
        return [(timestamp, stamp_to_ns(msg.header.stamp)) for timestamp, msg, _ in self._read(self.image_conns, True)]

    def _ground_truth(self) -> list[tuple[int, int, Any]]:
        """(header stamp, bag time, LabelledFrame) of every ground-truth message, in recording order."""
        msgs = [(stamp_to_ns(msg.header.stamp), timestamp, lane_array_to_detections(msg))
                for timestamp, msg, _ in self._read(self.gt_conns)]
        index = GroundTruthIndex.from_custom(self.custom, [m[0] for m in msgs], self.problems, self.notes)
        source = f"{self.path}:{self.gt_topic}"
        return [(stamp, timestamp, frame_from_ground_truth(det, index.h_samples(k), index.category(k), source))
                for k, (stamp, timestamp, det) in enumerate(msgs)]

    def ground_truth_for_frames(self) -> list[Any]:
        """Per image message (recording order): its ground truth (LabelledFrame or label) or None.

        From the ground-truth topic: paired as ``matching.match_frames`` does (unique header stamp,
        else order of recording inside a tie, else bag time); what cannot be paired is reported in
        ``problems`` and left unscored. From ``labels``: by header stamp when the labels carry
        ``meta["stamp_ns"]``, else by frame index.
        """
        keys = self.image_keys()
        if self.gt_topic is not None:
            gts = self._ground_truth()
            match = match_frames([k[1] for k in keys], [g[0] for g in gts], [k[0] for k in keys],
                                 [g[1] for g in gts])
            self.notes.extend(match.notes)
            self.problems.extend(match.problems)
            out = [None if g is None else gts[g][2] for g in match.gt_index]
            if match.unmatched:
                self.problems.append(f"{match.unmatched} frames have no matching ground truth")
            return out
        if self.labels is not None:
            frames = [label_to_frame(l, None, f"label {i}") if isinstance(l, dict) else l
                      for i, l in enumerate(self.labels)]
            stamps = [f.meta.get("stamp_ns") if hasattr(f, "meta") else None for f in frames]
            if all(s is not None for s in stamps) and frames:
                match = match_frames([k[1] for k in keys], [int(s) for s in stamps])
                self.notes.extend(match.notes)
                self.problems.extend(match.problems)
                out = [None if g is None else frames[g] for g in match.gt_index]
            else:
                out = [frames[i] if i < len(frames) else None for i in range(len(keys))]
            missing = sum(g is None for g in out)
            if missing:
                self.problems.append(f"{missing} frames have no matching ground truth")
            return out
        return [None] * len(keys)

    def serialized_images(self) -> Iterator[tuple[int, int, bytes]]:
        """(bag time, header stamp, CDR bytes) of every readable image: what replay publishes unchanged."""
        for timestamp, msg, data in self._read(self.image_conns):
            yield timestamp, stamp_to_ns(msg.header.stamp), bytes(data)

    def frames(self, ground_truth: bool = True) -> Iterator[BagFrame]:
        """Every readable image as a BagFrame, with its ground truth (``ground_truth_for_frames``) unless
        ``ground_truth`` is False; undecodable images are skipped and recorded."""
        for _, frame in self.indexed_frames(ground_truth):
            yield frame

    def indexed_frames(self, ground_truth: bool = True) -> Iterator[tuple[int, BagFrame]]:
        """(index among the image messages in recording order, BagFrame), as ``frames()``."""

        gts = self.ground_truth_for_frames() if ground_truth and self.has_ground_truth else None
        read = 0
        for index, (timestamp, msg, _) in enumerate(self._read(self.image_conns)):
            read += 1
            stamp = stamp_to_ns(msg.header.stamp)
            try:
                bgr = image_msg_to_bgr(msg)
            except Exception as exc:  # noqa: BLE001 - ImageConversionError and decoder errors
                self.problems.append(f"{self.image_topic} frame {index} (stamp {stamp}): {exc}")
                continue
            gt = gts[index] if gts is not None and index < len(gts) else None
            yield index, BagFrame(timestamp, bgr, stamp, str(msg.header.frame_id), gt)
        if self.expected_frames is not None and self.expected_frames > read:
            self.problems.append(f"{self.path}: only {read} of {self.expected_frames} image messages "
                                 f"on {self.image_topic} were readable")

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> BagReader:
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
