"""Pair a bag's camera frames with their ground-truth messages, and say what cannot be paired.

A frame is identified by its header stamp when the stamp is unique. Cameras that leave stamps
empty (all 0) or repeat them give ties; then the order of recording tells frames apart when a tie
holds as many images as ground-truth messages (the k-th image with that stamp belongs to the k-th
ground truth with it), else the bag (receive) times when they pair the tie one to one. Frames that
none of these tells apart are not scored, and the reader reports them (never a silent guess).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class FrameMatch:
    """``gt_index[i]``: index (recording order) of image i's ground-truth message, None when it has none."""

    gt_index: list[int | None]
    unmatched: int = 0  # images whose stamp no ground-truth message carries
    ambiguous: int = 0  # images whose ground truth cannot be told apart from another frame's
    by_order: int = 0  # images paired by order of recording inside a tie of stamps
    by_bag_time: int = 0  # images paired by bag time inside a tie of stamps
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _groups(stamps: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(stamps):
        out[int(s)].append(i)
    return out


def match_frames(image_stamps: Sequence[int], gt_stamps: Sequence[int],
                 image_times: Sequence[int] | None = None, gt_times: Sequence[int] | None = None) -> FrameMatch:
    """Pair images with ground-truth messages (both given in recording order, stamps in ns).

    ``image_times`` / ``gt_times``: bag (receive) times, used only to pair ties that order cannot.
    """
    images, gts = _groups(image_stamps), _groups(gt_stamps)
    result = FrameMatch([None] * len(image_stamps))
    ambiguous_stamps = []
    for stamp, img_idx in images.items():
        gt_idx = gts.get(stamp, [])
        if not gt_idx:
            result.unmatched += len(img_idx)
            continue
        if len(img_idx) == len(gt_idx):
            for i, g in zip(img_idx, gt_idx, strict=True):
                result.gt_index[i] = g
            if len(img_idx) > 1:
                result.by_order += len(img_idx)
            continue
        if image_times is not None and gt_times is not None:
            gt_by_time = _groups([gt_times[g] for g in gt_idx])
            pairs = {i: gt_by_time.get(int(image_times[i]), []) for i in img_idx}
            chosen = [gt_idx[p[0]] for p in pairs.values() if len(p) == 1]
            if all(len(p) == 1 for p in pairs.values()) and len(set(chosen)) == len(chosen):
                for i, g in zip(img_idx, chosen, strict=True):
                    result.gt_index[i] = g
                result.by_bag_time += len(img_idx)
                continue
        result.ambiguous += len(img_idx)
        ambiguous_stamps.append((stamp, len(img_idx), len(gt_idx)))
    if result.by_order:
        result.notes.append(f"{result.by_order} frames share header stamps with other frames (e.g. a camera that "
                            "leaves stamps empty): paired with their ground truth by order of recording")
    if result.by_bag_time:
        result.notes.append(f"{result.by_bag_time} frames share header stamps with other frames: paired with "
                            "their ground truth by bag time")
    if ambiguous_stamps:
        shown = "; ".join(f"stamp {s}: {n} images, {m} ground-truth messages" for s, n, m in ambiguous_stamps[:3])
        more = f" (and {len(ambiguous_stamps) - 3} more stamps)" if len(ambiguous_stamps) > 3 else ""
        result.problems.append(f"{result.ambiguous} frames cannot be told apart from other frames to find their "
                               f"ground truth (same header stamp, counts differ, bag times do not pair them): "
                               f"not scored ({shown}{more})")
    return result


def unique_stamps(stamps: Sequence[int], bag_times: Sequence[int]) -> tuple[list[int], str | None]:
    """Stamps that tell every frame apart, for publishing frames whose answers must be matched back.

    The stamps themselves when unique; else the bag times when those are unique; else the first
    bag time plus the frame index in ns. Returns (stamps, None) or (new stamps, why they were replaced).
    """
    if len(set(stamps)) == len(stamps):
        return list(stamps), None
    ties = len(stamps) - len(set(stamps))
    if len(set(bag_times)) == len(bag_times):
        return list(bag_times), (f"{ties} images repeat an earlier header stamp: published with their bag "
                                 "(receive) time as stamp so the detector's answers can be matched to them")
    base = int(bag_times[0]) if len(bag_times) else 0
    return [base + i for i in range(len(stamps))], (
        f"{ties} images repeat an earlier header stamp and bag times tie too: published with stamps "
        "numbered in recording order so the detector's answers can be matched to them")
