"""TuSimple lane labels: one JSON object per line with ``lanes``, ``h_samples``, ``raw_file``.

Each lane is a list of x values, one per h_sample row, -2 where the lane has no point.
Images are loaded lazily (``frame.load_image()``) so label files with thousands of frames
read quickly.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lanesad_ros.data.frames import TUSIMPLE_H_SAMPLES, DataError, LabelledFrame, assign_slots
from lanesad_ros.fileio import write_text_atomic

TUSIMPLE_SIZE = (1280, 720)


class FrameList(list):
    """A list of frames that also remembers what was skipped (``skipped``: reason strings)."""

    def __init__(self, frames=(), skipped=None):
        super().__init__(frames)
        self.skipped: list[str] = list(skipped or [])


def label_to_frame(label: dict, root: Path | None, source: str = "<label>",
                   image_size: tuple[int, int] = TUSIMPLE_SIZE) -> LabelledFrame:
    """One TuSimple label dict -> LabelledFrame; raises DataError naming ``source`` and field."""
    if not isinstance(label, dict):
        raise DataError(f"{source}: expected a JSON object, got {type(label).__name__}")
    for key in ("lanes", "h_samples"):
        if key not in label:
            raise DataError(f"{source}: missing field '{key}'")
    try:
        h_samples = np.asarray(label["h_samples"], dtype=np.float32).reshape(-1)
        raw_lanes = [np.asarray(lane, dtype=np.float32).reshape(-1) for lane in label["lanes"]]
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: 'lanes'/'h_samples' must be lists of numbers ({exc})") from None
    if h_samples.size == 0 or not np.all(np.isfinite(h_samples)):
        raise DataError(f"{source}: 'h_samples' must be a non-empty list of finite numbers")
    lanes = []
    empty = 0
    for k, xs in enumerate(raw_lanes):
        if xs.shape != h_samples.shape:
            raise DataError(f"{source}: lane {k} has {xs.size} values but h_samples has {h_samples.size}")
        if not np.all(np.isfinite(xs)):
            raise DataError(f"{source}: lane {k} has non-finite values")
        valid = xs >= 0
        if not valid.any():
            empty += 1
            continue
        pts = np.stack([xs[valid], h_samples[valid]], axis=1)
        lanes.append(pts[np.argsort(-pts[:, 1], kind="stable")])  # bottom -> top
    # Lanes are listed left to right in TuSimple; re-sort defensively by x at the bottom.
    order = sorted(range(len(lanes)), key=lambda i: _bottom_x(lanes[i], float(h_samples.max())))
    lanes = [lanes[i] for i in order]
    raw_file = label.get("raw_file")
    if raw_file is not None and not isinstance(raw_file, str):
        raise DataError(f"{source}: 'raw_file' must be a string")
    image_path = None
    if raw_file:
        image_path = Path(raw_file) if root is None else Path(root) / raw_file
    width, height = image_size
    meta = {"source": source, "empty_lanes": empty}
    if raw_file:
        meta["raw_file"] = raw_file
    return LabelledFrame(image_path=image_path, image=None, lanes=lanes,
                         slots=assign_slots(lanes, width), h_samples=h_samples.astype(np.int32),
                         width=width, height=height, meta=meta)


def _bottom_x(lane: np.ndarray, row: float) -> float:
    pts = lane[np.argsort(lane[:, 1])]
    if len(pts) < 2 or row <= pts[-1, 1]:
        return float(pts[-1, 0])
    a, b = pts[-2], pts[-1]
    return float(b[0] + (b[0] - a[0]) / max(b[1] - a[1], 1e-6) * (row - b[1]))


def read_tusimple_labels(json_path: str | Path | Iterable[str | Path], root: str | Path | None = None,
                         skip_bad: bool = False, check_images: bool = False,
                         image_size: tuple[int, int] = TUSIMPLE_SIZE) -> FrameList:
    """Read TuSimple label file(s) into LabelledFrames.

    ``root`` is the folder ``raw_file`` is relative to (default: the label file's folder).
    A malformed line raises ``DataError`` naming file and line, unless ``skip_bad``: then it
    is skipped and recorded in the result's ``skipped`` list. ``check_images`` also treats a
    missing image file as bad.
    """
    paths = [json_path] if isinstance(json_path, (str, Path)) else list(json_path)
    frames = FrameList()
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"TuSimple label file not found: {path}")
        base = path.parent if root is None else Path(root)
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                source = f"{path}:{lineno}"
                try:
                    try:
                        label = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{source}: invalid JSON ({exc.msg})") from None
                    frame = label_to_frame(label, base, source, image_size)
                    if check_images and (frame.image_path is None or not frame.image_path.is_file()):
                        raise DataError(f"{source}: image file not found: {frame.image_path} "
                                        f"(raw_file paths are taken relative to {base})")
                except DataError as exc:
                    if not skip_bad:
                        raise
                    frames.skipped.append(str(exc))
                    continue
                frames.append(frame)
    return frames


def frame_to_label(frame: LabelledFrame | dict, root: str | Path | None = None) -> dict:
    """LabelledFrame (or an existing label dict) -> TuSimple label dict with integer x, -2 gaps."""
    if isinstance(frame, dict):
        return {"lanes": [[int(round(x)) for x in lane] for lane in frame["lanes"]],
                "h_samples": [int(h) for h in frame["h_samples"]],
                "raw_file": str(frame.get("raw_file", ""))}
    h_samples = frame.h_samples if frame.h_samples is not None else TUSIMPLE_H_SAMPLES
    lanes = []
    for xs in frame.lane_xs(h_samples):
        xs = np.where(xs >= 0, np.round(xs), -2).astype(int)
        lanes.append(xs.tolist())
    raw_file = frame.meta.get("raw_file")
    if raw_file is None and frame.image_path is not None:
        raw_file = os.path.relpath(frame.image_path, root) if root is not None else str(frame.image_path)
    return {"lanes": lanes, "h_samples": [int(h) for h in h_samples], "raw_file": str(raw_file or "")}


def write_tusimple_labels(frames: Iterable[LabelledFrame | dict], path: str | Path,
                          root: str | Path | None = None) -> Path:
    """Write TuSimple label lines atomically; ``raw_file`` made relative to ``root`` if given."""
    path = Path(path)
    write_text_atomic(path, "".join(json.dumps(frame_to_label(frame, root)) + "\n" for frame in frames))
    return path


def load_label_dicts(sources: str | Path | Iterable) -> list[dict]:
    """Label dicts from a label file path, a list of paths, or a list of dicts (geometry input)."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    out = []
    for item in sources:
        if isinstance(item, dict):
            out.append(item)
            continue
        path = Path(item)
        if not path.is_file():
            raise DataError(f"TuSimple label file not found: {path}")
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    label = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
                if not isinstance(label, dict) or "lanes" not in label or "h_samples" not in label:
                    raise DataError(f"{path}:{lineno}: expected an object with 'lanes' and 'h_samples'")
                out.append(label)
    return out
