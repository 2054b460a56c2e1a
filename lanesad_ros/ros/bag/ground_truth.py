"""How ground truth is stored in a bag, so that it scores exactly like the label file it came from.

Each frame's ground truth is one ``lanesad_ros/LaneArray`` on the ground-truth topic (default
``/lanes_gt``), header equal to the image's:

- every labelled lane is a ``Lane`` whose ``image_points`` are exactly the label's points (TuSimple:
  the x >= 0 values at their h_samples; CULane: the ``.lines.txt`` points, negative x included),
  bottom to top, lanes in the label's order (left to right), slot from the label;
- a lane the label lists without a single point (TuSimple: all -2) is a ``Lane`` with no points, after
  the others: the official TuSimple ``bench()`` still counts it;
- what a LaneArray cannot hold goes into the bag's custom metadata under ``lanesad_ros.ground_truth``,
  one entry per ground-truth message in recording order (stamps may tie; the order cannot): the
  frame's h_samples (the rows every TuSimple lane is scored on, including rows no lane reaches) and its
  CULane scene category. Bags written before this key kept one h_samples list for all frames
  (``lanesad_ros.h_samples``) and categories by stamp (``lanesad_ros.categories``); both still read.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lanesad_ros.data.frames import LabelledFrame, assign_slots
from lanesad_ros.lanes import LaneDetections, LaneSlot
from lanesad_ros.ros.bag.typestore import CATEGORIES_KEY as LEGACY_CATEGORIES_KEY
from lanesad_ros.ros.bag.typestore import GROUND_TRUTH_KEY
from lanesad_ros.ros.bag.typestore import H_SAMPLES_KEY as LEGACY_H_SAMPLES_KEY


def ground_truth_lanes(frame: Any, image_width: int) -> list[tuple[np.ndarray, int]]:
    """(points float32 (N, 2) bottom -> top, slot) per lane of a LabelledFrame-like ``frame``, in its order,
    then one empty lane (no points, slot UNKNOWN) per lane its label lists without a point."""
    lanes = [np.asarray(l, dtype=np.float32).reshape(-1, 2) for l in frame.lanes]
    slots = getattr(frame, "slots", None)
    if slots is None or len(slots) != len(lanes):
        slots = assign_slots(lanes, image_width)
    out = [(pts[np.argsort(-pts[:, 1], kind="stable")], int(s)) for pts, s in zip(lanes, slots, strict=True)]
    empty = int(getattr(frame, "meta", {}).get("empty_lanes", 0) or 0)
    out += [(np.zeros((0, 2), np.float32), int(LaneSlot.UNKNOWN))] * empty
    return out


def frame_from_ground_truth(det: LaneDetections, h_samples: np.ndarray | None, category: str | None,
                            source: str) -> LabelledFrame:
    """The LabelledFrame a label loader would give for one ground-truth LaneArray (as LaneDetections).

    Lanes without points become ``meta["empty_lanes"]`` (as ``label_to_frame`` counts them);
    ``h_samples`` None leaves the rows to the scorer (CULane lines: the label's own rows per frame).
    """
    lanes = [lane for lane in det.lanes if len(lane.image_points)]
    meta: dict[str, Any] = {"source": source, "empty_lanes": len(det.lanes) - len(lanes)}
    if category:
        meta["category"] = category
    return LabelledFrame(image_path=None, image=None, lanes=[lane.image_points for lane in lanes],
                         slots=[int(lane.slot) for lane in lanes], h_samples=h_samples,
                         width=det.image_width, height=det.image_height, meta=meta)


@dataclass
class GroundTruthIndex:
    """Per ground-truth message (recording order): its h_samples and category, stored compactly."""

    h_rows: list[list[int]] = field(default_factory=list)  # distinct h_samples lists
    h_index: list[int] = field(default_factory=list)  # per message: index into h_rows, -1 = none
    categories: list[str] = field(default_factory=list)
    category_index: list[int] = field(default_factory=list)  # per message: index into categories, -1 = none

    def add(self, h_samples: Iterable[float] | None, category: str | None) -> None:
        """Record the next ground-truth message's h_samples and category."""
        self.h_index.append(_intern(self.h_rows, None if h_samples is None else
                                    [int(v) for v in np.asarray(h_samples).reshape(-1)]))
        self.category_index.append(_intern(self.categories, str(category) if category else None))

    def __len__(self) -> int:
        return len(self.h_index)

    def to_json(self) -> str:
        return json.dumps({"order": "ground-truth messages in recording order", "h_samples": self.h_rows,
                           "h_index": self.h_index, "categories": self.categories,
                           "category_index": self.category_index}, separators=(",", ":"))

    def h_samples(self, k: int) -> np.ndarray | None:
        i = self.h_index[k] if k < len(self.h_index) else -1
        return None if i < 0 else np.asarray(self.h_rows[i], dtype=np.float64)

    def category(self, k: int) -> str | None:
        i = self.category_index[k] if k < len(self.category_index) else -1
        return None if i < 0 else self.categories[i]

    @classmethod
    def from_custom(cls, custom: dict, gt_stamps: list[int], problems: list[str],
                    notes: list[str]) -> GroundTruthIndex:
        """The index from a bag's custom metadata for ``gt_stamps`` (the ground-truth messages read, in
        order). Legacy keys are spread over the messages (with a note); what cannot be read is appended
        to ``problems``."""
        index = cls()
        if GROUND_TRUTH_KEY in custom:
            try:
                data = json.loads(custom[GROUND_TRUTH_KEY])
                index = cls([list(map(int, r)) for r in data["h_samples"]], [int(i) for i in data["h_index"]],
                            [str(c) for c in data["categories"]], [int(i) for i in data["category_index"]])
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"custom data {GROUND_TRUTH_KEY} unreadable ({exc}): h_samples inferred, "
                                "categories ignored")
                return cls()
            if len(index) != len(gt_stamps):
                problems.append(f"custom data {GROUND_TRUTH_KEY} describes {len(index)} ground-truth messages, "
                                f"the bag has {len(gt_stamps)} readable: frames past the shorter are scored "
                                "without their h_samples and category")
            return index
        legacy_h = None
        if LEGACY_H_SAMPLES_KEY in custom:
            try:
                legacy_h = [int(v) for v in json.loads(custom[LEGACY_H_SAMPLES_KEY])]
            except (ValueError, TypeError):
                problems.append(f"custom data {LEGACY_H_SAMPLES_KEY} is not a JSON list; h_samples inferred")
        categories: dict = {}
        if LEGACY_CATEGORIES_KEY in custom:
            try:
                categories = dict(json.loads(custom[LEGACY_CATEGORIES_KEY]))
            except (ValueError, TypeError):
                problems.append(f"custom data {LEGACY_CATEGORIES_KEY} is not JSON; categories ignored")
        if legacy_h is not None:
            notes.append("bag written before per-frame ground-truth metadata: the first frame's h_samples "
                         "serve every frame and lanes labelled without points were dropped, so TuSimple scores "
                         "can differ from the label file's; convert it again for exact scores")
        for stamp in gt_stamps:
            index.add(legacy_h, categories.get(str(stamp)))
        return index


def _intern(table: list, value: Any) -> int:
    if value is None:
        return -1
    try:
        return table.index(value)
    except ValueError:
        table.append(value)
        return len(table) - 1
