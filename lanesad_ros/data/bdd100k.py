"""BDD100K lane labels (poly2d JSON) and the binary lane masks the SAD paper trains on.

Accepted layouts: a JSON list of frames (or ``{"frames": [...]}``), each
``{"name": "x.jpg", "labels": [{"category": "lane/single white", "attributes":
{"laneDirection": "parallel", ...}, "poly2d": [{"vertices": [[x, y], ...], "types": "LL",
"closed": false}]}]}``; the older layout uses ``"category": "lane"`` with the lane type in
attributes. ``types`` letters: L = vertex, C = Bezier control point (cubic: L C C L).
By default lane markings that run along the road are kept; crosswalks and markings with
``laneDirection == "vertical"`` (stop lines) are dropped, as they are not lanes.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from lanesad_ros.data.frames import DataError, LabelledFrame, assign_slots
from lanesad_ros.data.tusimple import FrameList

BDD_SIZE = (1280, 720)
# The paper draws BDD100K lane ground truth as 8 px wide lines at 1280x720.
BDD_LINE_WIDTH = 8


def _is_lane(label: dict, keep_vertical: bool) -> bool:
    cat = str(label.get("category", ""))
    if not (cat == "lane" or cat.startswith("lane/")):
        return False
    if "crosswalk" in cat:
        return False
    attrs = label.get("attributes") or {}
    if "crosswalk" in str(attrs.get("laneType", "")) or "crosswalk" in str(attrs.get("laneTypes", "")):
        return False
    return keep_vertical or attrs.get("laneDirection") != "vertical"


def poly2d_points(poly: dict, source: str, samples: int = 12) -> np.ndarray:
    """Vertices of one poly2d as float32 (N, 2), cubic Bezier segments (L C C L) sampled."""
    try:
        verts = np.asarray(poly["vertices"], dtype=np.float64).reshape(-1, 2)
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{source}: poly2d needs 'vertices' as a list of [x, y]") from None
    if not np.all(np.isfinite(verts)):
        raise DataError(f"{source}: poly2d has non-finite vertices")
    types = str(poly.get("types", "L" * len(verts)))
    if len(types) != len(verts):
        raise DataError(f"{source}: poly2d 'types' has {len(types)} letters for {len(verts)} vertices")
    out = [verts[0]]
    i = 1
    while i < len(verts):
        if types[i] == "C" and i + 2 < len(verts) and types[i + 1] == "C":
            p0, p1, p2, p3 = verts[i - 1], verts[i], verts[i + 1], verts[i + 2]
            t = np.linspace(0, 1, samples)[1:, None]
            out.extend((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3)
            i += 3
        else:
            out.append(verts[i])
            i += 1
    return np.asarray(out, dtype=np.float32)


def label_to_frame(item: dict, image_root: Path | None, source: str, keep_vertical: bool = False,
                   image_size: tuple[int, int] = BDD_SIZE) -> LabelledFrame:
    if not isinstance(item, dict) or "name" not in item:
        raise DataError(f"{source}: expected a frame object with 'name'")
    lanes, cats = [], []
    for j, label in enumerate(item.get("labels") or []):
        if not isinstance(label, dict):
            raise DataError(f"{source}: label {j} is not an object")
        if not _is_lane(label, keep_vertical):
            continue
        polys = label.get("poly2d")
        if polys is None:
            raise DataError(f"{source}: lane label {j} has no 'poly2d'")
        if isinstance(polys, dict):
            polys = [polys]
        for poly in polys:
            pts = poly2d_points(poly, f"{source} label {j}")
            if len(pts) >= 2:
                lanes.append(pts)
                cats.append(str(label.get("category")))
    width, height = image_size
    # left to right by x at the lowest point of each polyline
    order = sorted(range(len(lanes)), key=lambda i: float(lanes[i][np.argmax(lanes[i][:, 1]), 0]))
    lanes = [lanes[i] for i in order]
    cats = [cats[i] for i in order]
    name = str(item["name"])
    image_path = Path(name) if image_root is None else Path(image_root) / name
    return LabelledFrame(image_path=image_path, image=None, lanes=lanes, slots=assign_slots(lanes, width),
                         h_samples=None, width=width, height=height,
                         meta={"source": source, "name": name, "lane_categories": cats})


def read_bdd100k_lanes(json_path: str | Path, image_root: str | Path | None = None, skip_bad: bool = False,
                       keep_vertical: bool = False, image_size: tuple[int, int] = BDD_SIZE) -> FrameList:
    """Frames with lane polylines from a BDD100K label JSON (list of frames).

    ``image_root`` is the folder the ``name`` fields are relative to (default: the JSON's
    folder). Bad frames raise ``DataError`` naming file and frame, or are skipped and
    recorded in ``result.skipped`` with ``skip_bad``.
    """
    json_path = Path(json_path)
    if not json_path.is_file():
        raise DataError(f"BDD100K label file not found: {json_path}")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{json_path}: invalid JSON ({exc})") from None
    if isinstance(data, dict):
        data = data.get("frames", [data] if "name" in data else None)
    if not isinstance(data, list):
        raise DataError(f"{json_path}: expected a list of frames")
    root = json_path.parent if image_root is None else Path(image_root)
    frames = FrameList()
    for k, item in enumerate(data):
        name = item.get("name") if isinstance(item, dict) else None
        source = f"{json_path}: frame {k}" + (f" ({name})" if name else "")
        try:
            frames.append(label_to_frame(item, root, source, keep_vertical, image_size))
        except DataError as exc:
            if not skip_bad:
                raise
            frames.skipped.append(str(exc))
    return frames


def render_binary_mask(frame: LabelledFrame, line_width: int = BDD_LINE_WIDTH,
                       size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (H, W) mask, 1 on lane pixels (polylines ``line_width`` px wide), 0 elsewhere.

    ``size`` = (width, height) to draw at; lane points are scaled from the frame's size.
    """
    width, height = size or (frame.width, frame.height)
    sx, sy = width / frame.width, height / frame.height
    mask = np.zeros((height, width), np.uint8)
    for lane in frame.lanes:
        pts = np.round(lane * np.float32([sx, sy]) * 8).astype(np.int32)
        cv2.polylines(mask, [pts], False, 1, int(line_width), cv2.LINE_8, 3)
    return mask
